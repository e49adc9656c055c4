package serving

import (
	"encoding/json"
	"unicode/utf8"
)

// flatObject decodes the body nearly every client sends, one JSON object
// whose values are numbers, strings without escapes, true, false or null,
// into dst (cleared first) exactly as encoding/json decodes it into a
// map[string]any with UseNumber: a number as a json.Number, a repeated key
// keeping its last value. It does so without reflection, and takes a key
// that is in names (the inputs' names) without allocating it. For
// any other body (escapes, nested values, invalid UTF-8, bad JSON, data
// after the object) it reports false, and the caller decodes the body
// with encoding/json, which names what is wrong.
func flatObject(data []byte, dst map[string]any, names map[string]string) bool {
	clear(dst)
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		key, j, ok := plainString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return false
		}
		var v any
		switch c := data[i]; {
		case c == '"':
			s, j, ok := plainString(data, i)
			if !ok {
				return false
			}
			v, i = string(s), j
		case c == '-' || '0' <= c && c <= '9':
			j := number(data, i)
			if j < 0 {
				return false
			}
			v, i = json.Number(data[i:j]), j
		default:
			var lit string
			switch c {
			case 't':
				v, lit = true, "true"
			case 'f':
				v, lit = false, "false"
			case 'n':
				v, lit = nil, "null"
			default:
				return false
			}
			if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
				return false
			}
			i += len(lit)
		}
		name, known := names[string(key)]
		if !known {
			name = string(key)
		}
		dst[name] = v
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the string that opens at data[i]: its bytes between
// the quotes and the index after it, when it has no escape, no control
// character and is valid UTF-8 (which encoding/json keeps as it is).
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			return s, j + 1, ascii || utf8.Valid(s)
		case c == '\\' || c < ' ':
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// number reads the JSON number that opens at data[i] and returns the
// index after it, or -1 when it is not one by JSON's grammar.
func number(data []byte, i int) int {
	digits := func(i int) int {
		j := i
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		return j
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}
