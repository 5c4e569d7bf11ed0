// Package field places configuration problems: an Error names the field it
// is about by its path in the document ("upstreams[2].url"), so that the
// loader can map it to a line and column. A section's package reports
// paths relative to its section ("max_ttl"); its caller puts the section's
// own path in front with Prefix ("cache.max_ttl").
//
// It imports only the standard library, so that every package holding a
// configuration section (tls and transport included) can use it.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a configuration problem at a field. Path is empty when the
// problem is about the whole section.
type Error struct {
	Path string
	Err  error
}

// Error returns "path: problem", or the problem alone when Path is empty.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// Unwrap returns the problem.
func (e *Error) Unwrap() error { return e.Err }

// FieldPath returns the path of the field.
func (e *Error) FieldPath() string { return e.Path }

// Errorf returns an *Error at path with a formatted problem.
func Errorf(path, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// Wrap returns err as an *Error at path.
func Wrap(path string, err error) error { return &Error{Path: path, Err: err} }

// Join returns the path of sub under parent: Join("cache", "max_ttl") is
// "cache.max_ttl", Join("listeners", "[2]") is "listeners[2]", and an
// empty part leaves the other alone.
func Join(parent, sub string) string {
	switch {
	case parent == "":
		return sub
	case sub == "":
		return parent
	case strings.HasPrefix(sub, "["):
		return parent + sub
	}
	return parent + "." + sub
}

// Index returns the path of element i of the list at path.
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// Prefix returns the problems of err with prefix put in front of their
// paths: field errors move under prefix, other errors are placed at
// prefix. Joined errors (errors.Join) are taken apart and joined again.
// Prefix returns nil for a nil err.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	flat := Flatten(err)
	out := make([]error, len(flat))
	for i, e := range flat {
		var fe *Error
		if errors.As(e, &fe) && fe == e {
			out[i] = &Error{Path: Join(prefix, fe.Path), Err: fe.Err}
			continue
		}
		out[i] = &Error{Path: prefix, Err: e}
	}
	return errors.Join(out...)
}

// Flatten returns the problems of err, joined errors taken apart, in
// order; nil for a nil err.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
