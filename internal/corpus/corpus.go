// Package corpus loads the real provider answers in classify/testdata/corpus
// for the tests of this module. Each answer names its public source.
package corpus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Sample is one real provider answer, as sent, with the class it must get.
type Sample struct {
	Provider string            `json:"provider"`
	Status   int               `json:"status"`
	Headers  map[string]string `json:"headers"`
	Body     string            `json:"body"`
	Expected string            `json:"expected"`
	Code     string            `json:"code"`
	Source   string            `json:"source"`
	Note     string            `json:"note"`

	Name string `json:"-"` // the file name without .json
}

// Header returns the answer's headers.
func (s Sample) Header() http.Header {
	h := make(http.Header, len(s.Headers))
	for k, v := range s.Headers {
		h.Set(k, v)
	}
	return h
}

// Load reads every *.json answer in dir, refusing unknown fields so that a
// misspelt field cannot pass unnoticed.
func Load(dir string) ([]Sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var s Sample
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		s.Name = strings.TrimSuffix(filepath.Base(file), ".json")
		out = append(out, s)
	}
	return out, nil
}
