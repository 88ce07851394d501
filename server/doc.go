// Package server serves Matting Anything over HTTP: an http.Handler with a
// web page for interactive matting, a JSON API, and a rembg-compatible
// endpoint.
//
// The JSON API uploads an image once (POST /api/images): the SAM image
// embedding is computed once and kept in an LRU cache bounded in bytes,
// and any number of prompts (points, a box, the mask of an earlier result)
// are then matted on it (POST /api/images/{id}/matte) with only SAM's mask
// decoder and the M2M module. POST /api/remove takes rembg's multipart
// request and returns the RGBA cutout, so rembg clients work unchanged.
// GET / serves the page (embedded, works offline). openapi.yaml (served at
// /api/openapi.yaml) describes every endpoint.
//
// The handler is built to be safe under load: a bounded number of
// inference slots and a bounded queue (503 with Retry-After beyond them),
// a per-request timeout, cancellation when the client goes away, upload
// and pixel limits checked before decoding, an optional bearer token,
// Prometheus metrics (/metrics), health (/healthz) and readiness
// (/readyz) probes, and Drain for graceful shutdown. examples/server runs
// it as a command.
package server
