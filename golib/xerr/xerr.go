// Package xerr is exitnet's one error type. Every error that crosses the C ABI
// is an *Error whose Code maps 1:1 onto the C status enum in include/exitnet.h.
//
// Conventions:
//   - Messages name the argument that is wrong ("student: 3 rows, teacher: 4 rows").
//   - golib returns *Error for every expected failure; a panic means a broken
//     internal invariant and is turned into StatusInternal at the ABI boundary.
package xerr

import (
	"errors"
	"fmt"
)

// Status is the numeric failure class. The values are part of the C ABI:
// never renumber, only append.
type Status int

const (
	StatusOK              Status = 0 // EXITNET_OK
	StatusInvalidArgument Status = 1 // EXITNET_ERR_INVALID_ARGUMENT: bad dtype, shape, value, NULL pointer
	StatusInvalidState    Status = 2 // EXITNET_ERR_INVALID_STATE: freed/foreign handle, wrong call order
	StatusIO              Status = 3 // EXITNET_ERR_IO: file missing, truncated, corrupted, not writable
	StatusOutOfMemory     Status = 4 // EXITNET_ERR_OUT_OF_MEMORY: allocation refused or over a declared bound
	StatusNotSupported    Status = 5 // EXITNET_ERR_NOT_SUPPORTED: valid request this build cannot serve
	StatusCancelled       Status = 6 // EXITNET_ERR_CANCELLED: stopped by the caller's cancel flag
	StatusInternal        Status = 7 // EXITNET_ERR_INTERNAL: a recovered panic; the library is then poisoned
	StatusNotFound        Status = 8 // EXITNET_ERR_NOT_FOUND: a key (sample id, parameter name) is absent
)

var names = [...]string{"OK", "INVALID_ARGUMENT", "INVALID_STATE", "IO", "OUT_OF_MEMORY",
	"NOT_SUPPORTED", "CANCELLED", "INTERNAL", "NOT_FOUND"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Error is a failure with a status and a human message.
type Error struct {
	Code Status
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func newf(code Status, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Invalid reports a bad argument. The message should start with the argument's name.
func Invalid(format string, args ...any) error { return newf(StatusInvalidArgument, format, args...) }

// State reports a call that is not valid in the object's current state.
func State(format string, args ...any) error { return newf(StatusInvalidState, format, args...) }

// IO reports a file-system or file-format failure.
func IO(format string, args ...any) error { return newf(StatusIO, format, args...) }

// OOM reports an allocation that was refused or exceeds a declared bound.
func OOM(format string, args ...any) error { return newf(StatusOutOfMemory, format, args...) }

// NotSupported reports a valid request this build cannot serve.
func NotSupported(format string, args ...any) error { return newf(StatusNotSupported, format, args...) }

// NotFound reports a missing key.
func NotFound(format string, args ...any) error { return newf(StatusNotFound, format, args...) }

// Cancelled reports an operation stopped by its caller.
func Cancelled(format string, args ...any) error { return newf(StatusCancelled, format, args...) }

// Internal reports a broken invariant (normally produced only by the ABI's panic recovery).
func Internal(format string, args ...any) error { return newf(StatusInternal, format, args...) }

// Wrap prefixes the message of err with context, keeping its status.
// A non-*Error becomes StatusInternal, except os/io errors which callers should map themselves.
func Wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	prefix := fmt.Sprintf(format, args...)
	var e *Error
	if errors.As(err, &e) {
		return &Error{Code: e.Code, Msg: prefix + ": " + e.Msg}
	}
	return &Error{Code: StatusInternal, Msg: prefix + ": " + err.Error()}
}

// CodeOf returns the status of err: StatusOK for nil, the Code of an *Error,
// StatusInternal for anything else.
func CodeOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return StatusInternal
}
