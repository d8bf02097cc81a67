/* check-since's own test: a header and version script with one of each
 * problem it must find (tests/meson.build, check-since-self; the problems it
 * must report, and nothing else, are in ../expected). */
#ifndef API_H
#define API_H

typedef struct cprkit_ctx cprkit_ctx;
typedef int (*cprkit_cb)(void *userdata, int x); /* not a function */

struct cprkit_opts {
    int (*cprkit_hook)(int); /* a member, not a function */
};

/* Fine: exported in the 0.1 node. Since: 0.1 */
int cprkit_fine(cprkit_ctx *ctx);
/* One comment for two declarations, fine too. Since: 0.1 */
int cprkit_fine_a(cprkit_ctx *ctx);
int cprkit_fine_b(cprkit_ctx *ctx);

/* Fine: added in 0.3.
 * Since: 0.3 */
int cprkit_newer(cprkit_ctx *ctx);

/* Problem 1: no Since:. */
int cprkit_no_since(cprkit_ctx *ctx);

/* Problem 2: exported in the 0.1 node. Since: 0.3 */
int cprkit_wrong_since(cprkit_ctx *ctx);

/* Problem 3: exported by no version script. Since: 0.1 */
int cprkit_not_exported(cprkit_ctx *ctx);

/* Since: 0.1 -- belongs to the block above, not to the next one. */

int cprkit_since_of_another_block(cprkit_ctx *ctx); /* problem 4 */

/* Problem 5: an exception that is stale, it has a Since: 0.1 */
int cprkit_stale_exception(cprkit_ctx *ctx);

/* Fine: an exception, no Since: yet. */
int cprkit_excepted(cprkit_ctx *ctx);

static inline int cprkit_inline(void) { return 0; } /* not exported */

#endif
