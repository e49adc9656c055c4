// Package logging builds ward's loggers on log/slog: JSON lines with Elastic
// Common Schema field names (so that an ELK stack takes them as they are)
// when the output is not a terminal, readable text when it is. Every command
// and long-running part (server, agent) logs through it.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/wardml/ward/internal/config"
)

// ServiceName is the ECS service.name of every record.
const ServiceName = "ward"

// Options chooses the format and level of a logger.
type Options struct {
	// Format: auto (text on a terminal, else JSON), json or text.
	Format string
	// Level: debug, info, warn or error.
	Level string
	// Service overrides service.name (the model server says ward-serve).
	Service string
}

// New returns a logger that writes to w.
func New(w io.Writer, o Options) *slog.Logger {
	level := ParseLevel(o.Level)
	service := o.Service
	if service == "" {
		service = ServiceName
	}
	if o.Format == "text" || (o.Format != "json" && IsTerminal(w)) {
		h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr})
		return slog.New(h)
	}
	return slog.New(NewECSHandler(w, level, service))
}

// ParseLevel reads debug, info, warn or error (default info).
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// NewECSHandler returns a JSON handler whose records use ECS field names:
// @timestamp, log.level, message, service.name; attributes whose names are
// ECS fields (event.*, error.*, http.*, url.*, host.*, file.*, process.*,
// trace.*, labels.*) keep them, and every other attribute is put under ward.*.
func NewECSHandler(w io.Writer, level slog.Leveler, service string) slog.Handler {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: ecsAttr})
	return &ecsHandler{Handler: h.WithAttrs([]slog.Attr{slog.String("service.name", service)})}
}

// ecsHandler keeps groups out of the JSON (ECS wants dotted names at the top
// level), by prefixing the names of grouped attributes instead.
type ecsHandler struct {
	slog.Handler
	prefix string
}

func (h *ecsHandler) WithGroup(name string) slog.Handler {
	return &ecsHandler{Handler: h.Handler, prefix: h.prefix + name + "."}
}

func (h *ecsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ecsHandler{Handler: h.Handler.WithAttrs(h.prefixed(as)), prefix: h.prefix}
}

func (h *ecsHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.prefix == "" {
		return h.Handler.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	var as []slog.Attr
	r.Attrs(func(a slog.Attr) bool { as = append(as, a); return true })
	nr.AddAttrs(h.prefixed(as)...)
	return h.Handler.Handle(ctx, nr)
}

func (h *ecsHandler) prefixed(as []slog.Attr) []slog.Attr {
	if h.prefix == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: h.prefix + a.Key, Value: a.Value}
	}
	return out
}

var ecsPrefixes = []string{"event.", "error.", "http.", "url.", "host.", "file.", "process.", "trace.", "labels.", "service.", "log.", "ward.", "client.", "server.", "user_agent.", "transaction."}

func ecsAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case slog.TimeKey:
			return slog.Attr{Key: "@timestamp", Value: slog.StringValue(a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))}
		case slog.LevelKey:
			return slog.Attr{Key: "log.level", Value: slog.StringValue(strings.ToLower(a.Value.String()))}
		case slog.MessageKey:
			return slog.Attr{Key: "message", Value: slog.StringValue(config.Redact(a.Value.String()))}
		}
	}
	a = redactAttr(groups, a)
	if a.Key == "@timestamp" || a.Key == "message" {
		return a
	}
	for _, p := range ecsPrefixes {
		if strings.HasPrefix(a.Key, p) {
			return a
		}
	}
	if a.Key == "error" {
		a.Key = "error.message"
		return a
	}
	a.Key = "ward." + a.Key
	return a
}

// secretWords mark attributes whose values are never logged.
var secretWords = []string{"password", "passphrase", "secret", "token", "private_key", "privatekey"}

// redactAttr hides an attribute named for a secret, and the secrets of
// the URLs in any text value (the message, an error, a URL), with
// config.Redact: a token in WARD_MANIFEST_REPO never reaches a log line.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	switch v := a.Value.Resolve(); v.Kind() {
	case slog.KindString:
		if r := config.Redact(v.String()); r != v.String() {
			return slog.String(a.Key, r)
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
		if r := config.Redact(s); r != s {
			return slog.String(a.Key, r)
		}
	}
	return a
}

// Secret is a string that logs as REDACTED, whatever its attribute's name.
type Secret string

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Discard is a logger that drops everything, for tests and quiet callers.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
