/* A host SQLite built without what tether needs (compiled with -DSQLITE_OMIT_JSON): loading
 * must fail with a clear message, never crash, and the connection must close cleanly after.
 * Usage: limited_host LIB DB [SQL]: runs SQL (if given) on DB, loads LIB, closes DB; prints what
 * happened; exits 0 when the load was refused and the close went through. */
#include <stdio.h>
#include <string.h>
#include "sqlite3.h"

int main(int argc, char **argv) {
    sqlite3 *db;
    char *err = NULL;
    if (argc < 3 || sqlite3_open(argv[2], &db) != SQLITE_OK) return 2;
    if (argc > 3 && sqlite3_exec(db, argv[3], NULL, NULL, &err) != SQLITE_OK) {
        printf("setup failed: %s\n", err);
        return 2;
    }
    sqlite3_enable_load_extension(db, 1);
    int rc = sqlite3_load_extension(db, argv[1], NULL, &err);
    printf("sqlite %s, load rc=%d, message: %s\n", sqlite3_libversion(), rc, err ? err : "(none)");
    sqlite3_free(err);
    int closed = sqlite3_close(db) == SQLITE_OK;
    printf("closed: %s\n", closed ? "yes" : "no");
    return rc != SQLITE_OK && closed ? 0 : 1;
}
