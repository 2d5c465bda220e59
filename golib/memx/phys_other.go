//go:build !linux

package memx

func physicalMemory() int64 { return 0 }
