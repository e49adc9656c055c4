package serving_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The handler alone, without the network: ward-serve's /v1/predict
// against a bare handler that decodes the same JSON and answers a
// constant (go run ./tools/dev/bench serve measures both over loopback).
func BenchmarkPredictHandler(b *testing.B) {
	a, _ := stOlaf(b)
	s, err := newServer(config(b, modelFile(b, a.Data)))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body, _ := json.Marshal(stOlafCase())
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"prediction":1234.5,"hospital":"bench","model_version":"constant","request_id":"r"}` + "\n"))
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"ward-serve", s.Handler()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/predict", bytes.NewReader(body))
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
				io.Copy(io.Discard, w.Body)
			}
		})
	}
}
