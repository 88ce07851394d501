package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Errors of the API, each with its HTTP status, for errors.Is.
var (
	errBadRequest  = errors.New("bad request")
	errNotFound    = errors.New("not found")
	errTooLarge    = errors.New("too large")
	errMediaType   = errors.New("unsupported media type")
	errBusy        = errors.New("server busy")
	errDraining    = errors.New("server shutting down")
	errTimeout     = errors.New("request timed out")
	errClientGone  = errors.New("client went away")
	errAuth        = errors.New("unauthorized")
	errMethod      = errors.New("method not allowed")
	errInternalErr = errors.New("internal error")
)

// apiError is an error with the HTTP status it answers with.
type apiError struct {
	status int
	msg    string
	err    error // the sentinel or cause, for errors.Is
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// errorf makes an apiError whose sentinel follows from the status.
func errorf(status int, format string, args ...any) *apiError {
	err := fmt.Errorf(format, args...)
	return &apiError{status: status, msg: err.Error(), err: errors.Join(sentinelFor(status), errors.Unwrap(err))}
}

func sentinelFor(status int) error {
	switch status {
	case http.StatusBadRequest:
		return errBadRequest
	case http.StatusNotFound:
		return errNotFound
	case http.StatusRequestEntityTooLarge:
		return errTooLarge
	case http.StatusUnsupportedMediaType:
		return errMediaType
	case http.StatusUnauthorized:
		return errAuth
	case http.StatusMethodNotAllowed:
		return errMethod
	case http.StatusServiceUnavailable:
		return errBusy
	}
	return errInternalErr
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, errClientGone):
		return statusClientClosed
	case errors.Is(err, errBusy), errors.Is(err, errDraining), errors.Is(err, errTimeout):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// ctxError turns the end of a request's context into the API's error: the
// client went away, or the request ran past its timeout.
func ctxError(r *http.Request, ctx context.Context) error {
	if r.Context().Err() != nil {
		return errClientGone
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within the server's per-request timeout", errTimeout)
	}
	return ctx.Err()
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// writeError answers err as JSON with its status; 503s carry Retry-After.
// Nothing is written for a client that went away.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == statusClientClosed {
		if rec, ok := w.(*recorder); ok {
			rec.clientGone = true
		}
		return
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.cfg.RetryAfter.Seconds()))))
		if errors.Is(err, errBusy) {
			s.met.rejected.WithLabelValues("busy").Inc()
		} else if errors.Is(err, errTimeout) {
			s.met.rejected.WithLabelValues("timeout").Inc()
		} else if errors.Is(err, errDraining) {
			s.met.rejected.WithLabelValues("draining").Inc()
		}
	}
	if status == http.StatusServiceUnavailable && errors.Is(err, errDraining) {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, errorBody{Error: msg, Status: status})
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: cannot encode the answer","status":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// ms is a duration in milliseconds, rounded to 0.1 ms.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

// recorder remembers the status and size of an answer for the request log
// and the metrics.
type recorder struct {
	http.ResponseWriter
	status     int
	bytes      int64
	wrote      bool
	clientGone bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
