//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package distill

import "os"

// mmapFile is unavailable here: the caller reads the file instead.
func mmapFile(f *os.File, size int64) ([]byte, func() error, bool) { return nil, nil, false }
