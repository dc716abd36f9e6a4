#include <sqlite3.h>

// SQLITE_TRANSIENT is a cast of -1 to a function pointer, which Swift cannot import: binds of
// text and blobs pass this instead, so SQLite copies the bytes before the Swift buffer is freed.
static inline void (*chatmesh_sqlite_transient(void))(void *) { return SQLITE_TRANSIENT; }
