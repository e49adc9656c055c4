package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and checks one contract file strictly: an unknown key, a
// wrong type or a reference to a column that does not exist is an error
// naming the file and, where the YAML parser knows it, the line.
func Load(file string) (*Hospital, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", file, err)
	}
	h, err := Parse(data, file)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", file, err)
	}
	h.Dir = abs
	return h, nil
}

// Parse reads a contract from bytes; name is used in error messages.
func Parse(data []byte, name string) (*Hospital, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var h Hospital
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("contract %s: %s", name, yamlMessage(err))
	}
	sum := sha256.Sum256(data)
	h.Path = name
	h.Hash = hex.EncodeToString(sum[:])
	if err := h.normalize(); err != nil {
		return nil, fmt.Errorf("contract %s: %w", name, err)
	}
	return &h, nil
}

// yamlMessage rewrites the YAML parser's messages to say "unknown key".
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			if j := strings.Index(m, " not found in type "); j >= 0 && strings.Contains(m, "field ") {
				m = strings.Replace(m[:j], "field ", "unknown key ", 1)
			}
			for from, to := range modelTypes {
				if rest, ok := strings.CutSuffix(m, from); ok {
					m = rest + to
				}
			}
			msgs[i] = m
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// modelTypes maps the contract's YAML shapes of models' types to those
// types, at the end of the parser's other messages ("cannot unmarshal !!str
// `x` into contract.Column"): the messages name models.Column and
// models.Feature, whichever package holds their YAML keys.
var modelTypes = map[string]string{"contract.Column": "models.Column", "contract.feature": "models.Feature"}

// LoadAll loads every hospitals/<id>/hospital.yaml under dir, sorted by id.
func LoadAll(dir string) ([]*Hospital, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hospitals folder %s: %w", dir, err)
	}
	var out []*Hospital
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := filepath.Join(dir, e.Name(), FileName)
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		h, err := Load(file)
		if err != nil {
			return nil, err
		}
		if h.ID != e.Name() {
			return nil, fmt.Errorf("contract %s: id %q differs from its folder name %q", file, h.ID, e.Name())
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("hospitals folder %s: no <id>/%s found", dir, FileName)
	}
	return out, nil
}

// Select loads the hospitals named in ids, or all of them when all is set.
// Naming none and not all is an error that says what to pass.
func Select(dir string, ids []string, all bool) ([]*Hospital, error) {
	if len(ids) == 0 && !all {
		return nil, errors.New("name a hospital with --hospital ID, or pass --all")
	}
	hs, err := LoadAll(dir)
	if err != nil {
		return nil, err
	}
	if all {
		return hs, nil
	}
	byID := make(map[string]*Hospital, len(hs))
	known := make([]string, len(hs))
	for i, h := range hs {
		byID[h.ID] = h
		known[i] = h.ID
	}
	var out []*Hospital
	for _, id := range ids {
		h, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("hospital %q: no %s in %s (known: %s)", id, filepath.Join(id, FileName), dir, strings.Join(known, ", "))
		}
		out = append(out, h)
	}
	return out, nil
}
