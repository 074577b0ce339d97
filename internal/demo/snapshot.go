package demo

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// Table is the content of one business table, one rendered row per entry
// ("sku=T-shirt qty=8 reserved=0"), in primary-key order.
type Table struct {
	DB   string // the database file's base name, e.g. "inventory.db"
	Name string // the table, e.g. "stock"
	Rows []string
}

// Snapshot is the business tables of every service at one moment. The
// barrier tables are left out: they are Concord's bookkeeping, not shop
// data.
type Snapshot []Table

// Equal reports whether s and o hold the same rows in the same tables.
func (s Snapshot) Equal(o Snapshot) bool {
	return slices.EqualFunc(s, o, func(a, b Table) bool {
		return a.DB == b.DB && a.Name == b.Name && slices.Equal(a.Rows, b.Rows)
	})
}

// Table returns the rows of the named table (nil if there is none).
func (s Snapshot) Table(name string) []string {
	for _, t := range s {
		if t.Name == name {
			return t.Rows
		}
	}
	return nil
}

// Diff lists the rows that differ between s (before) and o (after), as
// "- table: row" for rows that went away and "+ table: row" for rows that
// appeared. It is empty when the snapshots are equal.
func (s Snapshot) Diff(o Snapshot) []string {
	var out []string
	for _, after := range o {
		before := s.Table(after.Name)
		for _, r := range before {
			if !slices.Contains(after.Rows, r) {
				out = append(out, fmt.Sprintf("- %-9s %s", after.Name, r))
			}
		}
		for _, r := range after.Rows {
			if !slices.Contains(before, r) {
				out = append(out, fmt.Sprintf("+ %-9s %s", after.Name, r))
			}
		}
	}
	return out
}

// readTable renders every row of table, ordered by its first column.
func readTable(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+table+" ORDER BY 1")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []string
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		fields := make([]string, len(cols))
		for i, c := range cols {
			v := vals[i]
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fields[i] = fmt.Sprintf("%s=%v", c, v)
		}
		out = append(out, strings.Join(fields, " "))
	}
	return out, rows.Err()
}

// printSnapshot writes the tables, one row per line, "(empty)" for a table
// without rows.
func printSnapshot(c *console, s Snapshot) {
	w := 9
	for _, t := range s {
		w = max(w, len(t.Name))
	}
	for _, t := range s {
		rows := t.Rows
		if len(rows) == 0 {
			rows = []string{"(empty)"}
		}
		for i, r := range rows {
			if i == 0 {
				c.printf("    %-13s %-*s %s\n", t.DB, w, t.Name, r)
			} else {
				c.printf("    %-13s %-*s %s\n", "", w, "", r)
			}
		}
	}
}
