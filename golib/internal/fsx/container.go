package fsx

import (
	"strconv"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// The metadata convention of every exitnet file (docs/file-format.md):
//
//	exitnet.kind         "model" | "lwf_targets" | "fisher_state"
//	exitnet.version      "2": the container version (checksummed); absent in
//	                     the files of container version 1
//	exitnet.file_crc32   the whole-file checksum (see Seal)
//
// plus the keys of each kind (its own payload version, exitnet.format_version).
const (
	MetaKind         = "exitnet.kind"
	MetaVersion      = "exitnet.version"
	ContainerVersion = 2
	// legacyFisherKind is where container-version-1 Fisher files put their kind.
	legacyFisherKind = "exitnet.format"
)

// Container is an opened, checksummed and bounded Arrow IPC file.
type Container struct {
	Reader *ipc.FileReader
	Meta   map[string]string // schema metadata (keys unique)
	Alloc  *memx.Allocator
	// Version is the container version: 1 (legacy, loaded through the
	// compatibility path) or 2.
	Version int
}

// Close releases the reader.
func (c *Container) Close() { c.Reader.Close() }

// Open verifies the checksum, the footer and the kind of the Arrow IPC file
// in data, and opens a reader whose buffers (decompressed bodies) may total at
// most bound bytes (and never more than the memory limit). Call it, and read
// the record batches, under a recover that passes the value to Recovered.
//
// Compatibility: a file without exitnet.version is container version 1 and
// loads (no checksum to verify: the readers' value checks still apply); a file
// declaring version 2 must carry a valid checksum; a larger version is refused
// as written by a newer exitnet.
func Open(data []byte, kind string, bound int64) (*Container, error) {
	sum, err := Verify(data)
	if err != nil {
		return nil, err
	}
	if err := arrowx.CheckIPCFooter(data); err != nil {
		return nil, xerr.IO("not a valid Arrow IPC file (%v)", err)
	}
	alloc := memx.NewAllocator(bound)
	rd, err := ipc.NewMappedFileReader(data, ipc.WithAllocator(alloc),
		ipc.WithMetadataSizeLimit(int64(len(data))), ipc.WithBodySizeLimit(int64(len(data))))
	if err != nil {
		return nil, xerr.IO("not an Arrow IPC file or truncated (%v)", err)
	}
	md := rd.Schema().Metadata()
	meta := make(map[string]string, md.Len())
	for i, k := range md.Keys() {
		if _, dup := meta[k]; dup {
			rd.Close()
			return nil, xerr.IO("schema metadata key %q appears twice", k)
		}
		meta[k] = md.Values()[i]
	}
	c := &Container{Reader: rd, Meta: meta, Alloc: alloc}
	if err := c.checkHeader(kind, sum); err != nil {
		rd.Close()
		return nil, err
	}
	return c, nil
}

func (c *Container) checkHeader(kind string, sum Checksum) error {
	got, ok := c.Meta[MetaKind]
	if !ok && kind == "fisher_state" {
		got, ok = c.Meta[legacyFisherKind]
	}
	if !ok || got != kind {
		return xerr.IO("not an exitnet %s file (metadata %s = %q)", kind, MetaKind, got)
	}
	v, ok := c.Meta[MetaVersion]
	if !ok {
		c.Version = 1
		if sum == CRC32 {
			return xerr.IO("metadata %s missing although the file carries a container-2 checksum (damaged file)", MetaVersion)
		}
		return nil
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil || n < 1 || strconv.Itoa(n) != v:
		return xerr.IO("metadata %s = %q is not a container version", MetaVersion, v)
	case n > ContainerVersion:
		return xerr.NotSupported("file written by a newer exitnet (%s = %d; this build reads container versions 1 and %d)", MetaVersion, n, ContainerVersion)
	case n == ContainerVersion && sum != CRC32:
		return xerr.IO("container version %d requires the %s checksum, which is missing (damaged file)", n, MetaChecksum)
	}
	c.Version = n
	return nil
}

// Recovered turns a value recovered while decoding into an error: an
// allocation over the bound is OutOfMemory (the memory limit) or IO (the file's
// own bound); anything else means corrupted bytes arrow-go tripped over.
func Recovered(what string, r any) error {
	if memx.IsAllocFailure(r) {
		return memx.AllocError(what, r)
	}
	return xerr.IO("%s: corrupted file (%v)", what, r)
}

// MaxInflation is the largest ratio of decoded buffer bytes to file bytes a
// reader accepts: exitnet's writers never compress (decoded == file), and
// Arrow's lz4/zstd bodies written by other tools rarely exceed it on float
// data. It bounds a decompression bomb to 16× the file (and the memory limit).
const MaxInflation = 16

// DecodeBound is the allocator bound for a file of size bytes.
func DecodeBound(size int) int64 { return MaxInflation*int64(size) + 1<<20 }

// BatchError describes a failure to read a record batch: the allocator's
// refusal (which arrow-go recovers and wraps) keeps its meaning, anything else
// is a corrupted file.
func BatchError(what string, err error) error {
	if r, ok := memx.AsRefused(err); ok {
		return r.Err(what)
	}
	return xerr.IO("%s: corrupted record batch (%v)", what, err)
}
