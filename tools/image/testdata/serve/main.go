// Command serve stands in for the model server in the image tests until
// serving/ lands: a real static binary that loads the model file baked into
// the image (WARD_MODEL), listens on PORT and answers POST /v1/predict with
// the model's intercept, so a test can tell that the image serves its own
// model.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
)

func main() {
	file := os.Getenv("WARD_MODEL")
	if file == "" {
		file = "/models/model.json"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		log.Fatal(err)
	}
	var m struct {
		Hospital  string  `json:"hospital"`
		Version   string  `json:"version"`
		Intercept float64 `json:"intercept"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		log.Fatalf("%s: %v", file, err)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("POST /v1/predict", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hospital": m.Hospital, "model_version": m.Version, "prediction": m.Intercept})
	})
	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
