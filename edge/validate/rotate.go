package validate

import (
	"fmt"
	"os"
)

// rotator is a file that is rotated by size: when a write would take it
// past max bytes, path becomes path.1, path.1 becomes path.2 and so on up
// to path.<keep>, the oldest one being removed, and a new path is
// started. keep -1 keeps no old file. A single line larger than max is
// written whole into a file of its own.
//
// It is not safe for concurrent use: the audit log's one writer
// goroutine owns it.
type rotator struct {
	path string
	max  int64
	keep int
	f    *os.File
	size int64
}

// openRotator opens path for appending, creating it (mode 0640) when it
// does not exist.
func openRotator(path string, max int64, keep int) (*rotator, error) {
	r := &rotator{path: path, max: max, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotator) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p would not fit.
func (r *rotator) Write(p []byte) (int, error) {
	if r.f == nil {
		// A failed rotation left no file open: try again.
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate closes the file, shifts the old ones and opens a new one.
func (r *rotator) rotate() error {
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	if r.keep < 1 {
		if err := os.Remove(r.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate audit log: %w", err)
		}
		return r.open()
	}
	old := func(i int) string { return fmt.Sprintf("%s.%d", r.path, i) }
	if err := os.Remove(old(r.keep)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	for i := r.keep - 1; i >= 1; i-- {
		if err := os.Rename(old(i), old(i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate audit log: %w", err)
		}
	}
	if err := os.Rename(r.path, old(1)); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	return r.open()
}

// Close closes the file.
func (r *rotator) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
