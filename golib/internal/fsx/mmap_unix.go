//go:build linux || darwin || freebsd || netbsd || openbsd

package fsx

import (
	"os"
	"syscall"
)

// mmapFile maps f read-only; ok is false when mmap fails (the caller falls back to reading).
func mmapFile(f *os.File, size int64) ([]byte, func() error, bool) {
	return mmapProt(f, size, syscall.PROT_READ)
}

// mmapRW maps f read-write and shared (writes reach the file).
func mmapRW(f *os.File, size int64) ([]byte, func() error, bool) {
	return mmapProt(f, size, syscall.PROT_READ|syscall.PROT_WRITE)
}

func mmapProt(f *os.File, size int64, prot int) ([]byte, func() error, bool) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, false
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), prot, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	return data, func() error { return syscall.Munmap(data) }, true
}

// processAlive reports whether pid runs on this host (EPERM: it runs as another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
