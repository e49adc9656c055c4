package store

import (
	"context"
	"fmt"
	"time"
)

// RetrainMark is feedback's request that a hospital be retrained first:
// its current model (Version) drifted from the data it was trained on.
type RetrainMark struct {
	Hospital string    `json:"hospital"`
	Version  string    `json:"version"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"requested_at"`
}

// MarkRetrain records m. A hospital marked already keeps its first mark,
// so that the order of the requests is the order they came in; it reports
// whether m was new.
func (s *Store) MarkRetrain(ctx context.Context, m RetrainMark) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO ward_retrain (hospital, version, reason, requested_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (hospital) DO NOTHING`, m.Hospital, m.Version, m.Reason, s.d.time(m.At))
	if err != nil {
		return false, fmt.Errorf("retrain mark of %s: %w", m.Hospital, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RetrainMarks returns every mark, the oldest first.
func (s *Store) RetrainMarks(ctx context.Context) ([]RetrainMark, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hospital, version, reason, requested_at FROM ward_retrain ORDER BY requested_at, hospital`)
	if err != nil {
		return nil, fmt.Errorf("retrain marks: %w", err)
	}
	defer rows.Close()
	var out []RetrainMark
	for rows.Next() {
		var m RetrainMark
		if err := rows.Scan(&m.Hospital, &m.Version, &m.Reason, timeScanner{&m.At}); err != nil {
			return nil, fmt.Errorf("retrain marks: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ClearRetrain removes a hospital's mark once a model of it is trained on
// data read at or after the mark: a mark made while it trained stays.
func (s *Store) ClearRetrain(ctx context.Context, hospital string, trainedFrom time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM ward_retrain WHERE hospital = $1 AND requested_at <= $2`, hospital, s.d.time(trainedFrom)); err != nil {
		return fmt.Errorf("retrain mark of %s: %w", hospital, err)
	}
	return nil
}
