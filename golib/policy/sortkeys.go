package policy

import (
	"math"
	"math/bits"
	"slices"
)

// descKey maps a float32 (not NaN) to a uint32 whose ascending order is the
// float's descending order (−0 and +0 map to the same key).
func descKey(v float32) uint32 {
	if v == 0 {
		v = 0
	}
	b := math.Float32bits(v)
	b ^= uint32(int32(b)>>31) | 0x80000000 // negative: all bits flipped; else the sign bit set
	return ^b
}

func fromDescKey(k uint32) float32 {
	b := ^k
	if b&0x80000000 != 0 {
		b &^= 0x80000000
	} else {
		b = ^b
	}
	return math.Float32frombits(b)
}

// scatter moves every v of src to dst[c[digit]] (post-increment), the digit
// being (v >> shift) & mask: one radix pass. A function of its own so that the
// loop keeps its few variables in registers (inlined into sortKeys it spilled
// them and ran 2× slower).
//
//go:noinline
func scatter(src, dst []uint64, c []uint32, shift uint, mask uint64) {
	for _, v := range src {
		j := (v >> shift) & mask
		p := c[j]
		dst[p] = v
		c[j] = p + 1
	}
}

// countDigits counts every digit of the keys of a in one pass: the counts of
// digit d at cnt[d·nb : (d+1)·nb] (not inlined, for the reason scatter is not).
//
//go:noinline
func countDigits(a []uint64, cnt []uint32, nb int, width, passes uint) {
	mask := uint64(nb - 1)
	c0 := cnt[:nb]
	switch passes {
	case 1:
		for _, v := range a {
			c0[(v>>32)&mask]++
		}
	case 2:
		c1 := cnt[nb : 2*nb]
		for _, v := range a {
			c0[(v>>32)&mask]++
			c1[(v>>(32+width))&mask]++
		}
	default:
		c1, c2 := cnt[nb:2*nb], cnt[2*nb:3*nb]
		for _, v := range a {
			c0[(v>>32)&mask]++
			c1[(v>>(32+width))&mask]++
			c2[(v>>(32+2*width))&mask]++
		}
	}
}

// sortKeys sorts a by the upper 32 bits (the lower bits only travel along) and
// returns the sorted keys: a or tmp (len(tmp) ≥ len(a)), whichever the last
// pass wrote. LSD radix sort over the key bits that vary only: bits above the
// highest bit in which two keys differ are the same for every key and cost no
// pass. Digits are up to 11 bits (8 KB of counts per digit), or up to 13 bits
// once there are 2^14 keys or more (32 KB each, worth clearing to save a
// scatter pass: confidences in [0.01, 1] vary in 26 bits, two 13-bit passes
// instead of three 11-bit ones). One pass counts every digit; a digit that is
// the same for every key is skipped.
func sortKeys(a, tmp []uint64, store *[3 << 13]uint32) []uint64 {
	if len(a) < 1024 {
		slices.Sort(a)
		return a
	}
	k0 := uint32(a[0] >> 32)
	var diff uint32
	for _, v := range a {
		diff |= uint32(v>>32) ^ k0
	}
	b := uint(bits.Len32(diff))
	if b == 0 {
		return a // every key equal
	}
	width := uint(11)
	if len(a) >= 1<<14 {
		width = 13
	}
	passes := (b + width - 1) / width
	width = (b + passes - 1) / passes // balanced digits
	nb := 1 << width
	mask := uint64(nb - 1)
	cnt := store[:int(passes)*nb] // counts of every digit (len(a) < 2^32: see ExactCurveInto)
	clear(cnt)
	countDigits(a, cnt, nb, width, passes)
	src, dst := a, tmp[:len(a)]
	for d := range passes {
		shift := 32 + d*width
		c := cnt[int(d)*nb : int(d+1)*nb]
		if int(c[(src[0]>>shift)&mask]) == len(src) {
			continue // one bucket: the order is already right for this digit
		}
		var sum uint32
		for i := range c {
			sum, c[i] = sum+c[i], sum
		}
		scatter(src, dst, c, shift, mask)
		src, dst = dst, src
	}
	return src
}
