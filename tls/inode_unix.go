//go:build unix

package edgetls

import (
	"os"
	"syscall"
)

// inodeOf returns the inode number of the file, so that a file renamed
// over the watched one is seen even with the same size and time.
func inodeOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) //nolint:unconvert // Ino is not uint64 everywhere.
	}
	return 0
}
