package bus

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// A pattern selects signal types by their dot-separated segments:
//
//	order.created    exactly that type
//	order.*          exactly one segment in place of the *
//	order.**         zero or more segments: order, order.created, order.line.added
//	audit.**.failed  ** may stand in the middle
//	**               every type
//
// A segment is [A-Za-z0-9_-]+, "*" or "**"; "*" and "**" stand alone in
// their segment, and "**" never follows "**" directly (it would match the
// same types twice over).

// segmentKind is what one parsed pattern segment matches.
type segmentKind uint8

const (
	literalSegment segmentKind = iota // the segment itself
	anySegment                        // "*": exactly one segment
	anySegments                       // "**": zero or more segments
)

type patternSegment struct {
	kind    segmentKind
	literal string
}

// parsePattern splits and checks a pattern. Errors wrap ErrInvalidPattern
// and give the offset of the fault, in the manner of net/http's patterns.
func parsePattern(pattern string) ([]patternSegment, error) {
	if pattern == "" {
		return nil, fmt.Errorf("%w %q: pattern is empty", ErrInvalidPattern, pattern)
	}
	segments := make([]patternSegment, 0, strings.Count(pattern, ".")+1)
	offset := 0
	for i, seg := range strings.Split(pattern, ".") {
		switch {
		case seg == "":
			return nil, fmt.Errorf("%w %q: at offset %d: segment %d is empty", ErrInvalidPattern, pattern, offset, i+1)
		case seg == "*":
			segments = append(segments, patternSegment{kind: anySegment})
		case seg == "**":
			if n := len(segments); n > 0 && segments[n-1].kind == anySegments {
				return nil, fmt.Errorf("%w %q: at offset %d: \"**\" directly after \"**\" is redundant", ErrInvalidPattern, pattern, offset)
			}
			segments = append(segments, patternSegment{kind: anySegments})
		default:
			for j := 0; j < len(seg); j++ {
				c := seg[j]
				if c == '*' {
					return nil, fmt.Errorf("%w %q: at offset %d: \"*\" must stand alone in its segment (%q)", ErrInvalidPattern, pattern, offset+j, seg)
				}
				if !isSegmentByte(c) {
					r, _ := utf8.DecodeRuneInString(seg[j:])
					return nil, fmt.Errorf("%w %q: at offset %d: %q is not allowed; segments are [A-Za-z0-9_-]+, \"*\" or \"**\"", ErrInvalidPattern, pattern, offset+j, r)
				}
			}
			segments = append(segments, patternSegment{kind: literalSegment, literal: seg})
		}
		offset += len(seg) + 1
	}
	return segments, nil
}

// ValidatePattern reports whether pattern is a valid subscription pattern.
// The error wraps ErrInvalidPattern and says where and why it fails.
func ValidatePattern(pattern string) error {
	_, err := parsePattern(pattern)
	return err
}

// Pattern is a parsed subscription pattern, for code that matches signal
// types outside a bus: a transport that receives more than a subscription
// asked for (NATS subject filters cannot say "**" in the middle) and
// filters the rest itself. It matches exactly as Subscribe's routing does.
type Pattern struct {
	text string
	m    *patternMatcher
}

// ParsePattern parses pattern; the error is ValidatePattern's.
func ParsePattern(pattern string) (Pattern, error) {
	m, err := newPatternMatcher(pattern)
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{text: pattern, m: m}, nil
}

// Match reports whether typ matches the pattern. The zero Pattern matches
// nothing.
func (p Pattern) Match(typ string) bool { return p.m != nil && p.m.matches(typ) }

// String returns the pattern as it was parsed.
func (p Pattern) String() string { return p.text }
