package zone

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/miekg/dns"
)

// ParseError is a syntax error in a zone file, at a line when one is
// known (Line 0 otherwise). Err is the *dns.ParseError it was made from.
type ParseError struct {
	File string
	Line int
	Msg  string
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return e.File + ": " + e.Msg
}

// Unwrap returns the parser's error.
func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a zone for origin from r, an RFC 1035 §5 master file named
// file in errors. $ORIGIN, $TTL and $GENERATE are honoured; $INCLUDE is
// rejected, because the poller (see Zones) watches only the named file
// and an include could read any file on the host. Records that state no
// TTL take the last explicit one, or the $TTL, or DefaultTTL; the class
// defaults to IN and only IN is accepted.
//
// Syntax errors are a *ParseError naming file and line
// ("zones/example.zone:12: bad A A: \"10.0.0.x\""); problems with the data
// as a whole (records outside origin, a second SOA, a CNAME beside other
// data, see FromRecords) name file and owner, every one of them joined.
func Parse(origin string, r io.Reader, file string) (*Zone, error) {
	o, err := canonOrigin(origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	zp := dns.NewZoneParser(r, o, file)
	zp.SetDefaultTTL(DefaultTTL)
	zp.SetIncludeAllowed(false)
	b := newBuilder(o)
	i := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		b.add(rr, i)
		i++
	}
	if err := zp.Err(); err != nil {
		return nil, fileError(file, err)
	}
	z, errs := b.zone()
	if len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("%s: %w", file, e.err)
		}
		return nil, errors.Join(out...)
	}
	return z, nil
}

// LoadFile reads the zone for origin from the master file at path; see
// Parse.
func LoadFile(origin, path string) (*Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(origin, f, path)
}

// FromRecords builds the zone for origin from records, one record each in
// master file syntax. Owner names relative to origin are allowed ("api 60
// IN A 10.0.0.1", "@ 300 IN MX 10 mail"); the TTL defaults to DefaultTTL
// and the class to IN. The zone is checked as Parse checks a file: every
// record at or below origin, at most one SOA and only at the apex, a CNAME
// alone at its name (RFC 1034 §3.6.2, RRSIG and NSEC excepted) and not at
// the apex, no NS at a wildcard. A zone without an SOA gets one, see
// Parse. Every problem is reported, joined, each prefixed by the index of
// its record ("records[3]: ...").
func FromRecords(origin string, records []string) (*Zone, error) {
	z, errs := fromRecords(origin, records)
	if len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			if e.at < 0 {
				out[i] = e.err
			} else {
				out[i] = fmt.Errorf("records[%d]: %w", e.at, e.err)
			}
		}
		return nil, errors.Join(out...)
	}
	return z, nil
}

func fromRecords(origin string, records []string) (*Zone, []recordError) {
	o, err := canonOrigin(origin)
	if err != nil {
		return nil, []recordError{{-1, err}}
	}
	b := newBuilder(o)
	for i, s := range records {
		rr, err := parseRecord(o, s)
		if err != nil {
			b.errs = append(b.errs, recordError{i, err})
			continue
		}
		b.add(rr, i)
	}
	return b.zone()
}

// RecordError is a problem of the record at Index of the input of
// FromRRs; Index is -1 when no single record is to blame.
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string {
	if e.Index < 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("record %d: %v", e.Index, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// FromRRs builds the zone for origin from rrs, checked as FromRecords
// checks its records; the records are the zone's from then on and must
// not be changed. Every problem is a *RecordError, all joined, ordered by
// index; for a CNAME beside other data the later of the two is blamed.
func FromRRs(origin string, rrs []dns.RR) (*Zone, error) {
	o, err := canonOrigin(origin)
	if err != nil {
		return nil, &RecordError{Index: -1, Err: err}
	}
	b := newBuilder(o)
	for i, rr := range rrs {
		b.add(rr, i)
	}
	z, errs := b.zone()
	if len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = &RecordError{Index: e.at, Err: e.err}
		}
		return nil, errors.Join(out...)
	}
	return z, nil
}

// Serial returns the serial of the zone's SOA.
func (z *Zone) Serial() uint32 { return z.soa.Serial }

// parseRecord parses s, which must hold exactly one record.
func parseRecord(origin, s string) (dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(s), origin, "")
	zp.SetDefaultTTL(DefaultTTL)
	zp.SetIncludeAllowed(false)
	rr, ok := zp.Next()
	if !ok {
		if err := zp.Err(); err != nil {
			return nil, recordParseError(err)
		}
		return nil, errors.New("no record")
	}
	if _, more := zp.Next(); more {
		return nil, errors.New("more than one record: write one record per entry")
	}
	if err := zp.Err(); err != nil {
		return nil, recordParseError(err)
	}
	return rr, nil
}

// canonOrigin returns origin as a lower-cased FQDN, or an error when it is
// not a domain name.
func canonOrigin(origin string) (string, error) {
	if origin == "" {
		return "", errors.New("origin is empty")
	}
	o := dnsname.Lower(dns.Fqdn(origin))
	if _, ok := dns.IsDomainName(o); !ok || strings.ContainsAny(o, " \t\n") {
		return "", fmt.Errorf("origin %q is not a domain name", origin)
	}
	return o, nil
}

// splitParseError takes apart the text of a *dns.ParseError,
// "[file: ]dns: <what>: \"<token>\" at line: <line>:<col>", which exposes
// its line no other way. It returns the message without the file and
// "dns: " prefixes, and the line (0 when the text has none).
func splitParseError(file string, err error) (msg string, line int) {
	msg = err.Error()
	if i := strings.LastIndex(msg, " at line: "); i >= 0 {
		pos, _, _ := strings.Cut(msg[i+len(" at line: "):], ":")
		line, _ = strconv.Atoi(pos)
		msg = msg[:i]
	}
	if file != "" {
		msg = strings.TrimPrefix(msg, file+": ")
	}
	return strings.TrimPrefix(msg, "dns: "), line
}

// fileError turns an error of the zone parser into a *ParseError.
func fileError(file string, err error) error {
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", file, err)
	}
	msg, line := splitParseError(file, pe)
	return &ParseError{File: file, Line: line, Msg: msg, Err: err}
}

// recordParseError is the parser's error for one inline record, without
// the position: the record is named by its index instead.
func recordParseError(err error) error {
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	msg, _ := splitParseError("", pe)
	return &inlineError{msg: msg, err: err}
}

// inlineError is a syntax error in an inline record.
type inlineError struct {
	msg string
	err error
}

func (e *inlineError) Error() string { return e.msg }
func (e *inlineError) Unwrap() error { return e.err }
