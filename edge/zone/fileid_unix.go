//go:build unix

package zone

import (
	"io/fs"
	"syscall"
)

// inode returns the inode and device numbers of fi.
func inode(fi fs.FileInfo) (ino, dev uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), uint64(st.Dev) // the field types differ between platforms
	}
	return 0, 0
}
