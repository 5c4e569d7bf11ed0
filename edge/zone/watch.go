package zone

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"time"
)

// source is a zone read from a file, and what is known of the file.
type source struct {
	origin string
	path   string
	list   int // the list of Zones.lists holding the zone, at pos
	pos    int

	id        fileID   // the file as last read, or the zero fileID after a failed stat
	sum       [32]byte // SHA-256 of the content in service
	failedSum [32]byte // SHA-256 of the content that failed to parse last
	err       error    // why the file's current state is not in service; nil when it is
}

// fileID tells whether a file changed: os.Stat follows symlinks, so a
// Kubernetes ConfigMap swapping its ..data symlink changes the inode and
// device even when size and mtime happen to match.
type fileID struct {
	mtime     int64
	size      int64
	ino, dev  uint64
	available bool
}

func statFile(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	ino, dev := inode(fi)
	return fileID{mtime: fi.ModTime().UnixNano(), size: fi.Size(), ino: ino, dev: dev, available: true}, nil
}

// outcome is what refresh did with a file.
type outcome int

const (
	unchanged outcome = iota // nothing new: the old state, good or bad, stays
	reloaded                 // a new zone replaced the old one in lists
	failed                   // a new problem: the old zone stays in lists
)

// refresh reads src's file when its fileID changed, or always when force
// is set, and puts the zone it holds in z.lists when its content changed
// and parses. The returned error is the file's current problem, old or new
// (nil when its content is in service). The caller holds z.mu (or is New).
func (z *Zones) refresh(src *source, force bool) (outcome, error) {
	id, err := statFile(src.path)
	if err != nil {
		if !src.id.available && src.err != nil && (!force || src.err.Error() == err.Error()) {
			return unchanged, src.err
		}
		src.id, src.err = fileID{}, err
		return failed, err
	}
	if id == src.id && !force {
		return unchanged, src.err
	}
	src.id = id
	data, err := os.ReadFile(src.path)
	if err != nil {
		src.id, src.err = fileID{}, err
		return failed, err
	}
	sum := sha256.Sum256(data)
	switch {
	case sum == src.sum:
		src.err = nil
		return unchanged, nil
	case src.err != nil && sum == src.failedSum:
		return unchanged, src.err
	}
	zn, err := Parse(src.origin, bytes.NewReader(data), src.path)
	if err != nil {
		src.err, src.failedSum = err, sum
		return failed, err
	}
	src.sum, src.err = sum, nil
	z.lists[src.list][src.pos] = zn
	return reloaded, nil
}

// Reload reads every zone file now, whether or not it looks changed,
// reloads those whose content changed, and swaps in the new zones at once.
// A file that cannot be read or parsed keeps its old zone; the problem is
// logged at error level (file and line) and counted once per content. The
// returned error joins the problems of every file whose current content
// is not in service, new or known. Safe for concurrent use (for SIGHUP).
func (z *Zones) Reload() error {
	return z.check(true)
}

// check refreshes every source, forcing a read when force is set, and
// publishes a new snapshot when some zone changed.
func (z *Zones) check(force bool) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	var errs []error
	changed := false
	for _, src := range z.sources {
		out, err := z.refresh(src, force)
		switch out {
		case reloaded:
			changed = true
			z.reloads.Add(1)
			zn := z.lists[src.list][src.pos]
			z.log.Info("zone reloaded", "zone", src.origin, "file", src.path, "records", zn.Len())
		case failed:
			z.reloadErrors.Add(1)
			z.log.Error("zone reload failed, keeping the zone loaded before", "zone", src.origin, "file", src.path, "error", err)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		if err := z.publish(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// watch checks the zone files every interval until Close.
func (z *Zones) watch() {
	defer close(z.done)
	t := time.NewTicker(z.interval)
	defer t.Stop()
	for {
		select {
		case <-z.stop:
			return
		case <-t.C:
			_ = z.check(false) // logged and counted by check
		}
	}
}
