package fsx

import (
	"bytes"
	"fmt"
	"hash/crc32"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Whole-file checksum of every exitnet file (docs/file-format.md):
//
// The schema metadata holds MetaChecksum = ChecksumMarker + 8 lowercase hex
// digits. An Arrow IPC file stores the schema twice (stream header and
// footer), so the marker occurs exactly twice. The digits are the CRC-32
// (IEEE, zlib.crc32 in Python) of the whole file computed with both 8-digit
// slots set to "00000000". The writer seals after encoding; the reader checks
// before any Arrow parsing. IEEE CRC-32 rather than CRC-32C so the pure-Python
// reader (which must not enter the Go library, e.g. in forked DataLoader
// workers) verifies with the standard library at C speed. A CRC guards against
// accidents (bit rot, truncation, a bad copy), not forgery: the readers stay
// bounded and fully validating behind it.
const (
	MetaChecksum   = "exitnet.file_crc32"
	ChecksumMarker = "EXITNET-CRC32-"
	// ChecksumPlaceholder is the value a writer puts in MetaChecksum before sealing.
	ChecksumPlaceholder = ChecksumMarker + "00000000"
)

// checksumSlots returns the offset of the 8 hex digits after each marker.
func checksumSlots(data []byte, marker string) []int {
	var out []int
	m := []byte(marker)
	for i := 0; ; {
		j := bytes.Index(data[i:], m)
		if j < 0 {
			return out
		}
		at := i + j + len(m)
		out = append(out, at)
		i = at
	}
}

func slotCRC(data []byte, slots []int, tab *crc32.Table) uint32 {
	var crc uint32
	prev := 0
	for _, s := range slots {
		crc = crc32.Update(crc, tab, data[prev:s])
		crc = crc32.Update(crc, tab, []byte("00000000"))
		prev = s + 8
	}
	return crc32.Update(crc, tab, data[prev:])
}

// Seal writes the checksum into an encoded file that carries
// ChecksumPlaceholder in its schema metadata.
func Seal(data []byte) error {
	slots := checksumSlots(data, ChecksumMarker)
	if len(slots) != 2 || slots[1]+8 > len(data) {
		return xerr.Invalid("the data contains the reserved checksum marker %q (in a name or metadata value); it cannot be written", ChecksumMarker)
	}
	sum := []byte(fmt.Sprintf("%08x", slotCRC(data, slots, crc32.IEEETable)))
	for _, s := range slots {
		copy(data[s:s+8], sum)
	}
	return nil
}

// Checksum is the outcome of Verify.
type Checksum int

const (
	NoChecksum Checksum = iota // the file carries no checksum (legacy, container version 1)
	CRC32                      // verified CRC-32 (container version 2)
	CRC32C                     // verified legacy Fisher CRC-32C (exitnet.file_crc32c)
)

// Verify checks the whole-file checksum before any parsing. A file carrying
// no marker returns NoChecksum (the caller decides, from the metadata, whether
// that is allowed); a wrong, partial or repeated marker is an IO error.
func Verify(data []byte) (Checksum, error) {
	kind, marker, tab := CRC32, ChecksumMarker, crc32.IEEETable
	slots := checksumSlots(data, marker)
	if len(slots) == 0 {
		// Fisher files of container version 1 carry a CRC-32C under this marker.
		kind, marker, tab = CRC32C, legacyCRC32CMarker, crc32.MakeTable(crc32.Castagnoli)
		slots = checksumSlots(data, marker)
		if len(slots) == 0 {
			return NoChecksum, nil
		}
	}
	if len(slots) != 2 {
		return 0, xerr.IO("corrupted or truncated file: %d checksum slots, want 2", len(slots))
	}
	if slots[1]+8 > len(data) {
		return 0, xerr.IO("truncated file (checksum slot past the end)")
	}
	a, b := string(data[slots[0]:slots[0]+8]), string(data[slots[1]:slots[1]+8])
	if want := fmt.Sprintf("%08x", slotCRC(data, slots, tab)); a != b || a != want {
		return 0, xerr.IO("corrupted or truncated file (checksum mismatch: stored %s/%s, computed %s)", a, b, want)
	}
	return kind, nil
}

const legacyCRC32CMarker = "EXITNET-CRC32C-"

// Reseal recomputes the checksum of data in place when it carries exactly two
// well-formed slots, as a forger (or a fuzzer) would, so that mutated bytes
// reach the parsers behind the checksum. It reports whether it sealed.
func Reseal(data []byte) bool {
	slots := checksumSlots(data, ChecksumMarker)
	if len(slots) != 2 || slots[1]+8 > len(data) {
		return false
	}
	for _, s := range slots {
		copy(data[s:s+8], "00000000")
	}
	return Seal(data) == nil
}
