package fsx

import (
	"io"
	"os"
	"syscall"

	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// openRegular opens path for reading without blocking and returns it only if
// it is a regular file of at most maxBytes bytes (and at least minBytes).
// O_NONBLOCK makes open(2) return at once on a FIFO with no writer; fstat then
// refuses FIFOs, devices (/dev/zero would be read until memory runs out),
// sockets and directories before a single byte is read.
func openRegular(path, what string, minBytes, maxBytes int64) (*os.File, int64, error) {
	if path == "" {
		return nil, 0, xerr.Invalid("path: empty")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, xerr.IO("path: %v", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, xerr.IO("path: %v", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, xerr.IO("path: %q is not a regular file (%s); %s files are read from regular files only", path, st.Mode().Type(), what)
	}
	size := st.Size()
	if size > maxBytes {
		f.Close()
		return nil, 0, xerr.IO("path: %q has %d bytes, more than the %d a %s file may have", path, size, maxBytes, what)
	}
	if size < minBytes {
		f.Close()
		return nil, 0, xerr.IO("path: %q: truncated (%d bytes; a %s file has at least %d)", path, size, what, minBytes)
	}
	return f, size, nil
}

// MinArrowFile is the size of the smallest Arrow IPC file (magic, footer length, magic).
const MinArrowFile = 12

// ReadFile reads a whole regular file of at most maxBytes bytes into memory
// (see openRegular). The buffer is checked against the memory limit before it
// is allocated; a file that grows while read is read up to its size at open.
func ReadFile(path, what string, maxBytes int64) ([]byte, error) {
	f, size, err := openRegular(path, what, MinArrowFile, maxBytes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := memx.Make[byte]("path: reading "+path, int(size))
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, xerr.IO("path: reading %q: %v (the file shrank while read?)", path, err)
	}
	return buf, nil
}

// MapFile maps a regular file of at most maxBytes bytes read-only (mmap on
// unix; a bounded read elsewhere or where mmap fails) and returns the bytes
// and the function releasing them.
func MapFile(path, what string, maxBytes int64) ([]byte, func() error, error) {
	f, size, err := openRegular(path, what, MinArrowFile, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if data, unmap, ok := mmapFile(f, size); ok {
		return data, unmap, nil
	}
	buf, err := memx.Make[byte]("path: reading "+path, int(size))
	if err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, nil, xerr.IO("path: reading %q: %v", path, err)
	}
	return buf, func() error { return nil }, nil
}
