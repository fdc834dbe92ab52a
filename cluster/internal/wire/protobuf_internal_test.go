package wire

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/signalbus/signalbus/bus"
)

// The encoder and the field reader take short cuts for the common shapes
// (one-byte tags, one-byte varints and lengths); each must agree with
// protowire, which they stand in for, on both sides of every cut-off.

func TestAppendHelpersAgreeWithProtowire(t *testing.T) {
	for num := protowire.Number(1); num < 16; num++ {
		for _, typ := range []protowire.Type{protowire.VarintType, protowire.Fixed64Type, protowire.BytesType, protowire.Fixed32Type} {
			if got, want := appendTag(nil, num, typ), protowire.AppendTag(nil, num, typ); !bytes.Equal(got, want) {
				t.Errorf("appendTag(%d, %d) = %x, protowire %x", num, typ, got, want)
			}
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 300, 16383, 16384, 1 << 35, ^uint64(0)} {
		if got, want := appendVarint([]byte{9}, v), protowire.AppendVarint([]byte{9}, v); !bytes.Equal(got, want) {
			t.Errorf("appendVarint(%d) = %x, protowire %x", v, got, want)
		}
	}
	for _, n := range []int{0, 1, 127, 128, 129, 16383, 16384} {
		v := bytes.Repeat([]byte{'x'}, n)
		if got, want := appendBytes(nil, v), protowire.AppendBytes(nil, v); !bytes.Equal(got, want) {
			t.Errorf("appendBytes(%d bytes) differs from protowire", n)
		}
		if got, want := appendString(nil, string(v)), protowire.AppendString(nil, string(v)); !bytes.Equal(got, want) {
			t.Errorf("appendString(%d bytes) differs from protowire", n)
		}
	}
}

func TestFieldReaderReadsWhatProtowireWrote(t *testing.T) {
	type field struct {
		num    protowire.Number
		typ    protowire.Type
		value  []byte
		varint uint64
	}
	var want []field
	var b []byte
	for _, num := range []protowire.Number{1, 15, 16, 2047, 2048} {
		for _, n := range []int{0, 1, 126, 127, 128, 300} {
			v := bytes.Repeat([]byte{byte(n)}, n)
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
			want = append(want, field{num: num, typ: protowire.BytesType, value: v})
		}
		for _, v := range []uint64{0, 127, 128, 1 << 40} {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
			want = append(want, field{num: num, typ: protowire.VarintType, varint: v})
		}
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, 7)
		want = append(want, field{num: num, typ: protowire.Fixed32Type})
	}
	r := fieldReader{b: b}
	for i, w := range want {
		num, typ, value, varint, ok := r.next()
		if !ok {
			t.Fatalf("field %d: reader stopped: %v", i, r.err)
		}
		if num != w.num || typ != w.typ || !bytes.Equal(value, w.value) || varint != w.varint {
			t.Fatalf("field %d: read (%d, %d, %d bytes, %d), want (%d, %d, %d bytes, %d)",
				i, num, typ, len(value), varint, w.num, w.typ, len(w.value), w.varint)
		}
	}
	if _, _, _, _, ok := r.next(); ok || r.err != nil {
		t.Fatalf("after the last field: ok=%v err=%v, want the end", ok, r.err)
	}
}

func TestFieldReaderRefusesTruncatedFields(t *testing.T) {
	for _, b := range [][]byte{
		{0x0a, 0x05, 'a', 'b'},  // bytes field shorter than its length
		{0x0a},                  // tag without length
		{0x08},                  // varint tag without value
		{0x08, 0x80},            // unterminated varint
		{0x00, 0x01},            // field number 0
		{0x0a, 0x80, 0x01, 'x'}, // two-byte length, one byte of data
		{0x0b, 0x01},            // start group: not in the format
	} {
		r := fieldReader{b: b}
		for {
			if _, _, _, _, ok := r.next(); !ok {
				break
			}
		}
		if r.err == nil {
			t.Errorf("%x: read to the end without an error", b)
		}
		if _, _, _, _, ok := r.next(); ok {
			t.Errorf("%x: read on after an error", b)
		}
	}
}

func TestPutLengthWritesWhatAppendBytesWrites(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21} {
		payload := bytes.Repeat([]byte{'p'}, n)
		b := append([]byte("head"), 0, 0)
		b = append(b, payload...)
		got := putLength(b, 4)
		want := protowire.AppendBytes([]byte("head"), payload)
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: putLength gives %d bytes, protowire %d", n, len(got), len(want))
		}
	}
}

// TestEncodeBatchSizesTheBodyToItsSignals: the body is sized on the first
// event's attributes and every signal's data, not on the first event alone
// (a big first signal would make room for hundreds of big ones).
func TestEncodeBatchSizesTheBodyToItsSignals(t *testing.T) {
	signals := make([]bus.Signal, 256)
	for i := range signals {
		signals[i] = bus.Signal{ID: fmt.Sprint(i), Type: "a.b", Source: "/s", SpecVersion: "1.0"}
	}
	signals[0].Data = make([]byte, 512<<10)
	m, err := EncodeBatch(signals, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if limit := 2*len(m.Data) + 256*len(signals); cap(m.Data) > limit {
		t.Errorf("a %d-byte body was given %d bytes of room, over %d", len(m.Data), cap(m.Data), limit)
	}
}

// TestEventStampsReadsAnEventThatDoesNotDecode: a receiver parks an event
// that does not decode, and still needs its stamps so that its publisher's
// next signal is no gap: EventStamps reads them from an event with an
// empty type, or one that is not UTF-8 (then saying it is not OK).
func TestEventStampsReadsAnEventThatDoesNotDecode(t *testing.T) {
	for _, typ := range []string{"", "\xff.x"} {
		raw, err := appendEvent(nil, bus.Signal{ID: "1", Source: "/s", SpecVersion: bus.SpecVersion, Type: typ},
			[]Attr{{Name: "sbnode", Value: "a"}, {Name: "sbseq", Value: "7"}})
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		if _, err := d.d.decode(raw); err == nil {
			t.Fatalf("type %q: the event decodes; the test needs one that does not", typ)
		}
		st := d.EventStamps(raw, "sbnode", "sbseq")
		if st.Values[0] != "a" || st.Values[1] != "7" {
			t.Errorf("type %q: stamps %q, want a and 7", typ, st.Values[:2])
		}
		if typ != "" && st.OK {
			t.Errorf("type %q: OK, for an event whose type is not UTF-8", typ)
		}
	}
}
