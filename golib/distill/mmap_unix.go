//go:build linux || darwin || freebsd || netbsd || openbsd

package distill

import (
	"os"
	"syscall"
)

// mmapFile maps f read-only; ok is false when mmap fails (the caller falls back to reading).
func mmapFile(f *os.File, size int64) ([]byte, func() error, bool) {
	if int64(int(size)) != size {
		return nil, nil, false
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	return data, func() error { return syscall.Munmap(data) }, true
}
