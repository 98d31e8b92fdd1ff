/* A host SQLite built without what tether needs (compiled with -DSQLITE_OMIT_JSON): loading
 * must fail with a clear message, never abort. Usage: limited_host LIB; exits 0 when refused. */
#include <stdio.h>
#include <string.h>
#include "sqlite3.h"

int main(int argc, char **argv) {
    sqlite3 *db;
    char *err = NULL;
    if (argc < 2 || sqlite3_open(":memory:", &db) != SQLITE_OK) return 2;
    sqlite3_enable_load_extension(db, 1);
    int rc = sqlite3_load_extension(db, argv[1], NULL, &err);
    printf("sqlite %s, load rc=%d, message: %s\n", sqlite3_libversion(), rc, err ? err : "(none)");
    int refused = rc != SQLITE_OK && err && strstr(err, "JSON");
    sqlite3_free(err);
    sqlite3_close(db);
    return refused ? 0 : 1;
}
