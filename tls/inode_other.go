//go:build !unix

package edgetls

import "os"

// inodeOf returns 0 where inodes are not available; modification time and
// size still detect changes.
func inodeOf(os.FileInfo) uint64 { return 0 }
