package h2

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A header block that arrives in one HEADERS frame, as nearly every
// request's does, is decoded here into a slice the connection reuses.
// The Framer's own decoding (ReadMetaHeaders) builds a MetaHeadersFrame
// and grows a new slice of fields for each block: most of what reading
// a DoH request allocated. A block split over CONTINUATION frames is
// still decoded by the Framer, with its limits on such sequences; the
// two share one HPACK decoder, whose dynamic table runs across all of
// the connection's blocks. The checks are the Framer's (RFC 9113 §8.2,
// §8.3): valid lower-case names and valid values, pseudo-header fields
// first, known and not repeated; a list over MaxHeaderBytes is cut short
// and marked truncated.

// headerBlock is a request's decoded header block; fields is valid until
// the next frame is read.
type headerBlock struct {
	id        uint32
	ended     bool                // END_STREAM
	fields    []hpack.HeaderField // pseudo-header fields first
	truncated bool                // over the header list size: fields incomplete
}

// headerReader decodes single-frame header blocks.
type headerReader struct {
	dec    *hpack.Decoder
	emitFn func(hpack.HeaderField) // emit, bound once
	max    uint32                  // the header list size limit

	fields     []hpack.HeaderField
	remain     uint32 // of the limit, for the fields
	remainTr   uint32 // of the limit, for the fields a trailer field names
	sawRegular bool
	truncated  bool
	invalid    error
}

var (
	errHeaderValue      = errors.New("invalid header field value")
	errHeaderName       = errors.New("invalid header field name")
	errPseudoAfter      = errors.New("pseudo-header field after a regular one")
	errPseudoUnknown    = errors.New("unknown pseudo-header field")
	errPseudoDuplicated = errors.New("repeated pseudo-header field")
)

func (h *headerReader) init(dec *hpack.Decoder, max uint32) {
	h.dec, h.max = dec, max
	h.emitFn = h.emit
}

// decode decodes f, a HEADERS frame with END_HEADERS. A StreamError
// rejects the request; any other error ends the connection.
func (h *headerReader) decode(f *http2.HeadersFrame) (headerBlock, error) {
	h.fields = h.fields[:0]
	h.remain, h.remainTr, h.sawRegular, h.truncated, h.invalid = h.max, h.max, false, false, nil
	frag := f.HeaderBlockFragment()
	if int64(len(frag)) > 2*(int64(h.remain)+int64(h.remainTr)) {
		// Far over the limit: not worth decoding (as the Framer does).
		return headerBlock{}, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	h.dec.SetEmitEnabled(true)
	h.dec.SetMaxStringLength(int(h.max))
	h.dec.SetEmitFunc(h.emitFn)
	if _, err := h.dec.Write(frag); err != nil {
		return headerBlock{}, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if err := h.dec.Close(); err != nil {
		return headerBlock{}, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if h.invalid == nil {
		h.invalid = checkPseudos(h.fields)
	}
	if h.invalid != nil {
		return headerBlock{}, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: h.invalid}
	}
	return headerBlock{id: f.StreamID, ended: f.StreamEnded(), fields: h.fields, truncated: h.truncated}, nil
}

func (h *headerReader) emit(hf hpack.HeaderField) {
	switch {
	case !httpguts.ValidHeaderFieldValue(hf.Value):
		h.invalid = errHeaderValue
	case hf.IsPseudo():
		if h.sawRegular {
			h.invalid = errPseudoAfter
		}
	default:
		h.sawRegular = true
		if !validName(hf.Name) {
			h.invalid = errHeaderName
		}
	}
	if h.invalid != nil {
		h.dec.SetEmitEnabled(false)
		return
	}
	// The Framer counts a trailer field against a budget of its own, as
	// one field per name it lists.
	remain, size := &h.remain, hf.Size()
	if hf.Name == "trailer" {
		n := uint32(strings.Count(hf.Value, ",") + 1)
		remain, size = &h.remainTr, uint32(len(hf.Value))-n+1+n*hpack.HeaderField{}.Size()
	}
	if size <= *remain {
		*remain -= size
		h.fields = append(h.fields, hf)
		return
	}
	h.dec.SetEmitEnabled(false)
	h.truncated, h.remain, h.remainTr = true, 0, 0
}

// validName reports whether name is a token in lower case (RFC 9113
// §8.2.1).
func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudos checks the pseudo-header fields that lead fields: known
// ones, each at most once (RFC 9113 §8.3).
func checkPseudos(fields []hpack.HeaderField) error {
	var request, response bool
	for i, hf := range fields {
		if !hf.IsPseudo() {
			break
		}
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return errPseudoUnknown
		}
		for _, prev := range fields[:i] {
			if prev.Name == hf.Name {
				return errPseudoDuplicated
			}
		}
	}
	if request && response {
		return errPseudoUnknown
	}
	return nil
}
