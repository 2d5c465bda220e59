//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package fsx

import "os"

// mmapFile is unavailable here: the caller reads the file instead.
func mmapFile(f *os.File, size int64) ([]byte, func() error, bool) { return nil, nil, false }

func mmapRW(f *os.File, size int64) ([]byte, func() error, bool) { return nil, nil, false }

// processAlive cannot tell here: temporary files with a pid are kept.
func processAlive(pid int) bool { return true }
