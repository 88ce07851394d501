//go:build !amd64 || purego

package mam

// fgRow is the estimation's pixel update (see fgRowGo).
var fgRow = fgRowGo
