// Loads libtether through mattn/go-sqlite3's database/sql driver, as a Go application would,
// and syncs two client databases through a tether-server. Built offline by go_test.sh against
// Debian's golang-github-mattn-go-sqlite3-dev (GO111MODULE=off, GOPATH=/usr/share/gocode).
// Usage: host LIB SERVER_URL DIR
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sqlite3 "github.com/mattn/go-sqlite3"
)

var passed, failed int

func check(name string, ok bool, detail ...interface{}) {
	if ok {
		passed++
		fmt.Printf("ok - %s\n", name)
	} else {
		failed++
		fmt.Printf("not ok - %s %v\n", name, detail)
	}
}

func must(err error) {
	if err != nil {
		fmt.Println("go host: error:", err)
		os.Exit(1)
	}
}

type syncResult struct {
	Pushed    int  `json:"pushed"`
	Pulled    int  `json:"pulled"`
	Failed    int  `json:"failed"`
	Conflicts int  `json:"conflicts"`
	Skipped   bool `json:"skipped"`
}

func client(path, url string) *sql.DB {
	db, err := sql.Open("sqlite3_tether", path)
	must(err)
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT)",
		"SELECT tether_track('tasks')",
		"SELECT tether_config('server_url', '" + url + "')",
	} {
		_, err := db.Exec(stmt)
		must(err)
	}
	return db
}

func syncNow(db *sql.DB) syncResult {
	var text string
	must(db.QueryRow("SELECT tether_sync()").Scan(&text))
	var result syncResult
	must(json.Unmarshal([]byte(text), &result))
	return result
}

func rows(db *sql.DB) map[string]string {
	found := map[string]string{}
	r, err := db.Query("SELECT tether_id, title || '/' || coalesce(status, '') FROM tasks")
	must(err)
	defer r.Close()
	for r.Next() {
		var key, value string
		must(r.Scan(&key, &value))
		found[key] = value
	}
	must(r.Err())
	return found
}

func main() {
	lib, url, dir := os.Args[1], os.Args[2], os.Args[3]
	// The driver loads the extension on every connection database/sql opens.
	sql.Register("sqlite3_tether", &sqlite3.SQLiteDriver{Extensions: []string{lib}})

	a := client(filepath.Join(dir, "a.db"), url)
	defer a.Close()
	var version string
	must(a.QueryRow("SELECT tether_version()").Scan(&version))
	check("loads: tether_version()", version != "", version)

	// Two connections of the pool at once: each one loaded the extension.
	ctx := context.Background()
	c1, err := a.Conn(ctx)
	must(err)
	c2, err := a.Conn(ctx)
	must(err)
	var v1, v2 string
	must(c1.QueryRowContext(ctx, "SELECT tether_version()").Scan(&v1))
	must(c2.QueryRowContext(ctx, "SELECT tether_version()").Scan(&v2))
	check("every pooled connection loads it", v1 == version && v2 == version)
	c1.Close()
	c2.Close()

	_, err = a.Exec("SELECT tether_config('nope', 1)")
	check("errors surface as Go errors", err != nil && strings.Contains(err.Error(), "unknown setting"), err)

	for _, t := range [][2]interface{}{{"Buy milk", "open"}, {"Call Anna", nil}} {
		_, err := a.Exec("INSERT INTO tasks (title, status) VALUES (?, ?)", t[0], t[1])
		must(err)
	}
	pushed := syncNow(a)
	check("client A pushes its rows", pushed.Pushed == 2 && pushed.Failed == 0 && pushed.Conflicts == 0, pushed)

	b := client(filepath.Join(dir, "b.db"), url)
	defer b.Close()
	pulled := syncNow(b)
	check("client B pulls them", pulled.Pulled >= 2, pulled)
	sent, received := rows(a), rows(b)
	same := len(sent) == 2
	for key, value := range sent {
		same = same && received[key] == value
	}
	check("the rows on B are A's rows, with their sync keys", same, sent, received)

	fmt.Printf("go host: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
