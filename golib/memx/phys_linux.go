//go:build linux

package memx

import (
	"sync"
	"syscall"
)

var physOnce = sync.OnceValue(func() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
})

func physicalMemory() int64 { return physOnce() }
