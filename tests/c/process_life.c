/*
 * process_life: process-lifecycle scenarios for libferrohsm_pkcs11.so.
 *
 * usage: process_life <module.so> <mode> <so-pin> <user-pin>
 *
 * modes:
 *   fork          fork() after use: child sees CKR_CRYPTOKI_NOT_INITIALIZED,
 *                 re-initialises and works; parent is unaffected
 *   exit-open     exit(0) with sessions open, logged in, a digest active,
 *                 no C_Finalize
 *   exit-busy     exit(0) while other threads are still calling the module
 *   atexit        C_Finalize from an atexit handler registered after C_Initialize
 *   atexit-early  C_Finalize from an atexit handler registered before dlopen
 *   dlclose-fork  C_Finalize, dlclose, fork (atfork handlers of an unloaded
 *                 library must not run), reload, use again, dlclose, fork
 *   cycles        200 C_Initialize/C_Finalize cycles; no fd or thread leak
 *   init-race     two threads call C_Initialize at once, 100 rounds
 *   two-copies    the module loaded twice in one process: from a copy of the
 *                 file (two independent instances, both work) and through a
 *                 symlink (the same instance: already initialised)
 *
 * Prints "FAIL: ..." per failed check and exits 1 if any; otherwise prints
 * "MODE <mode> PASSED" and exits 0. Children of fork() arm alarm() so they
 * cannot hang forever.
 */
#include "p11_util.c"

#include <dirent.h>
#include <signal.h>

static const char *g_path;
static const char *g_so_pin;
static const char *g_user_pin;

static int finish(const char *mode)
{
	fflush(stdout);
	if (g_failures) {
		printf("MODE %s: %d CHECK(S) FAILED\n", mode, g_failures);
		return 1;
	}
	printf("MODE %s PASSED\n", mode);
	fflush(stdout);
	return 0;
}

/* Loads the module, C_Initialize (OS locking), makes a token with a user PIN. */
static CK_FUNCTION_LIST_PTR setup(void **handle, CK_SLOT_ID *slot, const char *label)
{
	CK_FUNCTION_LIST_PTR f = NULL;
	*handle = load_module(g_path, &f);
	if (!*handle)
		return NULL;
	CK_C_INITIALIZE_ARGS a = os_locking_args();
	if (!EXPECT_RV(f->C_Initialize(&a), CKR_OK))
		return NULL;
	*slot = make_token(f, label, g_so_pin, g_user_pin);
	if (*slot == (CK_SLOT_ID)-1)
		return NULL;
	return f;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Waits for pid up to `secs` seconds; kills it on timeout. Returns wait status or -1. */
static int wait_child(pid_t pid, int secs, const char *what)
{
	for (int i = 0; i < secs * 100; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0) {
			fail("%s: waitpid: %s", what, strerror(errno));
			return -1;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fail("%s: child did not exit within %d s (hang) and was killed", what, secs);
	return -1;
}

static void expect_clean_exit(int st, const char *what)
{
	if (st == -1)
		return;
	if (WIFSIGNALED(st))
		fail("%s: child killed by signal %d (%s)", what, WTERMSIG(st),
		     strsignal(WTERMSIG(st)));
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("%s: child exited with status %d", what, WEXITSTATUS(st));
}

/* ---- fork ------------------------------------------------------------------ */

static int mode_fork(void)
{
	void *h;
	CK_SLOT_ID slot;
	CK_FUNCTION_LIST_PTR f = setup(&h, &slot, "parent token");
	if (!f)
		return finish("fork");

	CK_SESSION_HANDLE s, s2;
	if (!EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK) ||
	    !EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_OK))
		return finish("fork");
	EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
		  CKR_OK);
	digest_abc(f, s, KAT_SHA256, "parent before fork");
	/* Leave a multi-part digest half done in s2 across the fork. */
	CK_MECHANISM m = {CKM_SHA256, NULL, 0};
	EXPECT_RV(f->C_DigestInit(s2, &m), CKR_OK);
	EXPECT_RV(f->C_DigestUpdate(s2, (CK_BYTE_PTR) "a", 1), CKR_OK);

	int pipefd[2];
	if (pipe(pipefd) != 0) {
		fail("pipe: %s", strerror(errno));
		return finish("fork");
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return finish("fork");
	}
	if (pid == 0) {
		alarm(30);
		close(pipefd[0]);
		g_failures = 0;
		CK_ULONG n = 0;
		CK_INFO info;
		CK_SESSION_HANDLE cs;
		unsigned char rnd[32];
		/* Everything but C_Initialize / C_GetFunctionList is refused in the child. */
		EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &cs),
			  CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_DigestInit(s, &m), CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_DigestUpdate(s2, (CK_BYTE_PTR) "bc", 2),
			  CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_GenerateRandom(s, rnd, sizeof rnd), CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_CloseSession(s), CKR_CRYPTOKI_NOT_INITIALIZED);
		EXPECT_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
		CK_FUNCTION_LIST_PTR f2 = NULL;
		CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
		if (gfl)
			EXPECT_RV(gfl(&f2), CKR_OK);

		CK_C_INITIALIZE_ARGS a = os_locking_args();
		if (EXPECT_RV(f->C_Initialize(&a), CKR_OK)) {
			CK_SLOT_ID cslot = make_token(f, "child token", g_so_pin, g_user_pin);
			if (cslot != (CK_SLOT_ID)-1 &&
			    EXPECT_RV(f->C_OpenSession(cslot, CKF_SERIAL_SESSION, NULL, NULL, &cs),
				      CKR_OK)) {
				for (size_t i = 0; i < N_KATS; i++)
					digest_abc(f, cs, &ABC_KATS[i], "child after C_Initialize");
				if (EXPECT_RV(f->C_GenerateRandom(cs, rnd, sizeof rnd), CKR_OK)) {
					if (write(pipefd[1], rnd, sizeof rnd) != (ssize_t)sizeof rnd)
						fail("child: write to pipe failed");
				}
			}
			EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
		}
		close(pipefd[1]);
		fflush(stdout);
		exit(g_failures ? 1 : 0);
	}
	close(pipefd[1]);
	/* Parent: draw random right away, to compare with the child's stream. */
	unsigned char prnd[32], crnd[32];
	EXPECT_RV(f->C_GenerateRandom(s, prnd, sizeof prnd), CKR_OK);
	int st = wait_child(pid, 40, "fork child");
	expect_clean_exit(st, "fork child");
	ssize_t got = read(pipefd[0], crnd, sizeof crnd);
	close(pipefd[0]);
	if (got == (ssize_t)sizeof crnd)
		CHECK(memcmp(prnd, crnd, sizeof prnd) != 0,
		      "parent and child got the same C_GenerateRandom output after fork "
		      "(RNG state not reseeded in the child)");

	/* Parent unaffected: old sessions keep working. */
	digest_abc(f, s, KAT_SHA256, "parent after fork, old session");
	EXPECT_RV(f->C_DigestUpdate(s2, (CK_BYTE_PTR) "bc", 2), CKR_OK);
	unsigned char out[32];
	CK_ULONG len = sizeof out;
	if (EXPECT_RV(f->C_DigestFinal(s2, out, &len), CKR_OK)) {
		char hx[65];
		hex(out, len, hx);
		CHECK(strcmp(hx, KAT_SHA256->hex) == 0,
		      "parent: digest started before fork and finished after gave %s", hx);
	}
	CK_SESSION_INFO si;
	if (EXPECT_RV(f->C_GetSessionInfo(s, &si), CKR_OK))
		CHECK(si.state == CKS_RO_USER_FUNCTIONS,
		      "parent: session state after fork %lu, expected CKS_RO_USER_FUNCTIONS",
		      (unsigned long)si.state);
	CK_TOKEN_INFO ti;
	if (EXPECT_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK)) {
		CK_UTF8CHAR lab[32];
		pad_label(lab, "parent token");
		CHECK(memcmp(ti.label, lab, 32) == 0, "parent: token label changed after fork");
	}
	EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
	return finish("fork");
}

/* ---- exit without C_Finalize ------------------------------------------------- */

static int mode_exit_open(void)
{
	void *h;
	CK_SLOT_ID slot;
	CK_FUNCTION_LIST_PTR f = setup(&h, &slot, "exit-open");
	if (!f)
		return finish("exit-open");
	CK_SESSION_HANDLE s[4];
	for (int i = 0; i < 4; i++)
		EXPECT_RV(f->C_OpenSession(slot,
					   CKF_SERIAL_SESSION | (i % 2 ? CKF_RW_SESSION : 0),
					   NULL, NULL, &s[i]),
			  CKR_OK);
	EXPECT_RV(f->C_Login(s[0], CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
		  CKR_OK);
	CK_MECHANISM m = {CKM_SHA512, NULL, 0};
	EXPECT_RV(f->C_DigestInit(s[1], &m), CKR_OK);
	EXPECT_RV(f->C_DigestUpdate(s[1], (CK_BYTE_PTR) "abc", 3), CKR_OK);
	m.mechanism = CKM_SHA256;
	EXPECT_RV(f->C_DigestInit(s[2], &m), CKR_OK);
	int rc = finish("exit-open");
	printf("exiting with sessions open and a digest active, no C_Finalize\n");
	fflush(stdout);
	exit(rc);
}

struct busy {
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	volatile int started;
};

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	CK_SESSION_HANDLE s;
	if (b->f->C_OpenSession(b->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
		return NULL;
	__atomic_add_fetch(&b->started, 1, __ATOMIC_SEQ_CST);
	unsigned char buf[64], out[32];
	CK_MECHANISM m = {CKM_SHA256, NULL, 0};
	/* Loop until the process exits; return values are deliberately ignored here. */
	for (;;) {
		CK_ULONG len = sizeof out;
		b->f->C_GenerateRandom(s, buf, sizeof buf);
		b->f->C_DigestInit(s, &m);
		b->f->C_Digest(s, buf, sizeof buf, out, &len);
	}
	return NULL;
}

static int mode_exit_busy(void)
{
	void *h;
	CK_SLOT_ID slot;
	CK_FUNCTION_LIST_PTR f = setup(&h, &slot, "exit-busy");
	if (!f)
		return finish("exit-busy");
	static struct busy b;
	b.f = f;
	b.slot = slot;
	b.started = 0;
	for (int i = 0; i < 4; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, busy_main, &b) != 0)
			fail("pthread_create failed");
	}
	for (int i = 0; i < 500 && __atomic_load_n(&b.started, __ATOMIC_SEQ_CST) < 4; i++)
		usleep(10000);
	CHECK(__atomic_load_n(&b.started, __ATOMIC_SEQ_CST) == 4,
	      "busy threads could not open their sessions");
	usleep(200000);
	int rc = finish("exit-busy");
	printf("exiting while 4 threads are inside the module, no C_Finalize\n");
	fflush(stdout);
	exit(rc);
}

/* ---- C_Finalize from atexit --------------------------------------------------- */

static CK_FUNCTION_LIST_PTR g_atexit_f;

static void finalize_at_exit(void)
{
	if (!g_atexit_f) {
		printf("atexit handler: no function list\n");
		fflush(stdout);
		_exit(4);
	}
	CK_RV rv = g_atexit_f->C_Finalize(NULL);
	if (rv != CKR_OK) {
		printf("FAIL: atexit handler: C_Finalize returned %s (0x%lx)\n", ckr_name(rv),
		       (unsigned long)rv);
		fflush(stdout);
		_exit(3);
	}
	CK_INFO info;
	rv = g_atexit_f->C_GetInfo(&info);
	if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
		printf("FAIL: atexit handler: C_GetInfo after C_Finalize returned %s (0x%lx)\n",
		       ckr_name(rv), (unsigned long)rv);
		fflush(stdout);
		_exit(3);
	}
	printf("atexit handler: C_Finalize returned CKR_OK\n");
	fflush(stdout);
}

static int mode_atexit(int early)
{
	const char *mode = early ? "atexit-early" : "atexit";
	if (early)
		atexit(finalize_at_exit);
	void *h;
	CK_SLOT_ID slot;
	CK_FUNCTION_LIST_PTR f = setup(&h, &slot, mode);
	if (!f)
		return finish(mode);
	g_atexit_f = f;
	if (!early)
		atexit(finalize_at_exit);
	CK_SESSION_HANDLE s;
	if (EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK)) {
		EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
			  CKR_OK);
		digest_abc(f, s, KAT_SHA256, mode);
		CK_MECHANISM m = {CKM_SHA256, NULL, 0};
		EXPECT_RV(f->C_DigestInit(s, &m), CKR_OK);
	}
	int rc = finish(mode);
	fflush(stdout);
	exit(rc);
}

/* ---- dlclose then fork ---------------------------------------------------------- */

static void fork_and_check(const char *what)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		fail("%s: fork: %s", what, strerror(errno));
		return;
	}
	if (pid == 0) {
		alarm(30);
		exit(0);
	}
	expect_clean_exit(wait_child(pid, 40, what), what);
}

static int use_once(const char *label)
{
	void *h;
	CK_SLOT_ID slot;
	CK_FUNCTION_LIST_PTR f = setup(&h, &slot, label);
	if (!f)
		return 0;
	CK_SESSION_HANDLE s;
	if (EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK)) {
		digest_abc(f, s, KAT_SHA256, label);
		unsigned char r[16];
		EXPECT_RV(f->C_GenerateRandom(s, r, sizeof r), CKR_OK);
	}
	EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
	if (dlclose(h) != 0) {
		fail("%s: dlclose: %s", label, dlerror());
		return 0;
	}
	return 1;
}

static int mode_dlclose_fork(void)
{
	if (use_once("dlclose 1"))
		fork_and_check("fork after first dlclose");
	/* The library can be loaded and used again after being unloaded. */
	if (use_once("dlclose 2"))
		fork_and_check("fork after second dlclose");
	return finish("dlclose-fork");
}

/* ---- two copies in one process ------------------------------------------------ */

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	if (!in || !out) {
		if (in)
			fclose(in);
		if (out)
			fclose(out);
		return 0;
	}
	char buf[65536];
	size_t n;
	int ok = 1;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		ok &= fwrite(buf, 1, n, out) == n;
	fclose(in);
	ok &= fclose(out) == 0;
	return ok;
}

static int mode_two_copies(void)
{
	const char *copy = "./copy-of-module.so", *link = "./link-to-module.so";
	unlink(link);
	CHECK(copy_file(g_path, copy), "copying %s to %s", g_path, copy);
	CHECK(symlink(g_path, link) == 0, "symlink: %s", strerror(errno));
	void *h1, *h2;
	CK_SLOT_ID s1, s2;
	CK_FUNCTION_LIST_PTR f1 = setup(&h1, &s1, "first copy");
	CK_FUNCTION_LIST_PTR f2 = NULL;
	h2 = load_module(copy, &f2);
	if (!f1 || !f2)
		return finish("two-copies");
	CHECK((void *)f1->C_Initialize != (void *)f2->C_Initialize,
	      "a copy under another path must be a separate instance");
	CK_C_INITIALIZE_ARGS a = os_locking_args();
	EXPECT_RV(f2->C_Initialize(&a), CKR_OK);
	s2 = make_token(f2, "second copy", g_so_pin, g_user_pin);
	CK_SESSION_HANDLE x, y;
	EXPECT_RV(f1->C_OpenSession(s1, CKF_SERIAL_SESSION, NULL, NULL, &x), CKR_OK);
	EXPECT_RV(f2->C_OpenSession(s2, CKF_SERIAL_SESSION, NULL, NULL, &y), CKR_OK);
	digest_abc(f1, x, KAT_SHA256, "first copy");
	digest_abc(f2, y, KAT_SHA256, "second copy");
	/* Finalising one instance leaves the other working. */
	EXPECT_RV(f2->C_Finalize(NULL), CKR_OK);
	digest_abc(f1, x, KAT_SHA256, "first copy after the second finalised");
	/* Through a symlink, the dynamic loader hands back the same instance. */
	CK_FUNCTION_LIST_PTR f3 = NULL;
	void *h3 = load_module(link, &f3);
	if (f3) {
		CHECK((void *)f3->C_Initialize == (void *)f1->C_Initialize,
		      "a symlink to the same file is the same instance");
		EXPECT_RV(f3->C_Initialize(&a), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	}
	EXPECT_RV(f1->C_Finalize(NULL), CKR_OK);
	if (h3)
		dlclose(h3);
	dlclose(h2);
	dlclose(h1);
	return finish("two-copies");
}

/* ---- many init/finalize cycles ---------------------------------------------------- */

static int count_threads(void)
{
	return count_dir("/proc/self/task");
}

static int mode_cycles(void)
{
	CK_FUNCTION_LIST_PTR f = NULL;
	void *h = load_module(g_path, &f);
	if (!h)
		return finish("cycles");
	int fds1 = -1, thr1 = -1;
	const int N = 200;
	for (int i = 0; i < N && g_failures < 10; i++) {
		CK_C_INITIALIZE_ARGS a = os_locking_args();
		CK_RV rv = f->C_Initialize(i % 2 ? NULL : &a);
		if (rv != CKR_OK) {
			fail("cycle %d: C_Initialize returned %s (0x%lx)", i, ckr_name(rv),
			     (unsigned long)rv);
			break;
		}
		CK_INFO info;
		EXPECT_RV(f->C_GetInfo(&info), CKR_OK);
		/* Find an initialised token, or make one on the spare slot. */
		CK_ULONG n = 0;
		CK_SLOT_ID slots[64];
		CK_SLOT_ID tok = (CK_SLOT_ID)-1;
		if (EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK) && n > 0 && n <= 64 &&
		    EXPECT_RV(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK)) {
			for (CK_ULONG j = 0; j < n; j++) {
				CK_TOKEN_INFO ti;
				if (f->C_GetTokenInfo(slots[j], &ti) == CKR_OK &&
				    (ti.flags & CKF_TOKEN_INITIALIZED)) {
					tok = slots[j];
					break;
				}
			}
		} else {
			fail("cycle %d: bad slot list (count %lu)", i, (unsigned long)n);
		}
		if (tok == (CK_SLOT_ID)-1)
			tok = make_token(f, "cycle token", g_so_pin, g_user_pin);
		CK_SESSION_HANDLE s = 0, s2 = 0;
		if (tok != (CK_SLOT_ID)-1 &&
		    EXPECT_RV(f->C_OpenSession(tok, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK)) {
			digest_abc(f, s, KAT_SHA256, "cycle");
			unsigned char r[16];
			EXPECT_RV(f->C_GenerateRandom(s, r, sizeof r), CKR_OK);
			/* Leave a session with an active operation for C_Finalize to clean up. */
			if (EXPECT_RV(f->C_OpenSession(tok, CKF_SERIAL_SESSION, NULL, NULL, &s2),
				      CKR_OK)) {
				CK_MECHANISM m = {CKM_SHA384, NULL, 0};
				EXPECT_RV(f->C_DigestInit(s2, &m), CKR_OK);
			}
		}
		EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
		EXPECT_RV(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
		if (s)
			EXPECT_RV(f->C_DigestInit(s, &(CK_MECHANISM){CKM_SHA256, NULL, 0}),
				  CKR_CRYPTOKI_NOT_INITIALIZED);
		if (i == 0) {
			fds1 = count_dir("/proc/self/fd");
			thr1 = count_threads();
		}
	}
	int fds = count_dir("/proc/self/fd");
	int thr = count_threads();
	note("open fds after cycle 1: %d, after %d cycles: %d; threads %d -> %d", fds1, N, fds,
	     thr1, thr);
	CHECK(fds <= fds1 + 8, "file descriptors leak across C_Initialize/C_Finalize: %d after "
			       "the first cycle, %d after %d cycles",
	      fds1, fds, N);
	CHECK(thr <= thr1 + 4,
	      "threads leak across C_Initialize/C_Finalize: %d after the first cycle, %d after "
	      "%d cycles",
	      thr1, thr, N);
	return finish("cycles");
}

/* ---- concurrent C_Initialize -------------------------------------------------------- */

struct racer {
	CK_FUNCTION_LIST_PTR f;
	pthread_barrier_t *bar;
	CK_RV rv;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	CK_C_INITIALIZE_ARGS a = os_locking_args();
	pthread_barrier_wait(r->bar);
	r->rv = r->f->C_Initialize(&a);
	return NULL;
}

static int mode_init_race(void)
{
	CK_FUNCTION_LIST_PTR f = NULL;
	void *h = load_module(g_path, &f);
	if (!h)
		return finish("init-race");
	for (int round = 0; round < 100 && g_failures < 10; round++) {
		pthread_barrier_t bar;
		pthread_barrier_init(&bar, NULL, 2);
		struct racer r[2] = {{f, &bar, 0xffff}, {f, &bar, 0xffff}};
		pthread_t t[2];
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, racer_main, &r[i]);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&bar);
		int oks = (r[0].rv == CKR_OK) + (r[1].rv == CKR_OK);
		int already = (r[0].rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) +
			      (r[1].rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);
		if (oks != 1 || already != 1)
			fail("round %d: concurrent C_Initialize returned %s (0x%lx) and %s (0x%lx); "
			     "expected exactly one CKR_OK and one "
			     "CKR_CRYPTOKI_ALREADY_INITIALIZED",
			     round, ckr_name(r[0].rv), (unsigned long)r[0].rv, ckr_name(r[1].rv),
			     (unsigned long)r[1].rv);
		CK_ULONG n = 0;
		EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
		CHECK(n >= 1, "round %d: no slots after concurrent C_Initialize", round);
		EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
		EXPECT_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	}
	return finish("init-race");
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s <module.so> <mode> <so-pin> <user-pin>\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_path = argv[1];
	g_so_pin = argv[3];
	g_user_pin = argv[4];
	const char *mode = argv[2];
	if (!strcmp(mode, "fork"))
		return mode_fork();
	if (!strcmp(mode, "two-copies"))
		return mode_two_copies();
	if (!strcmp(mode, "exit-open"))
		return mode_exit_open();
	if (!strcmp(mode, "exit-busy"))
		return mode_exit_busy();
	if (!strcmp(mode, "atexit"))
		return mode_atexit(0);
	if (!strcmp(mode, "atexit-early"))
		return mode_atexit(1);
	if (!strcmp(mode, "dlclose-fork"))
		return mode_dlclose_fork();
	if (!strcmp(mode, "cycles"))
		return mode_cycles();
	if (!strcmp(mode, "init-race"))
		return mode_init_race();
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
