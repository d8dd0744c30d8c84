/*
 * store_fork: after fork(), parent and child both use one token through the
 * module's persistent store (run by tests/tests/persistence.rs).
 *
 * usage: store_fork <module.so> <so-pin> <user-pin>
 *
 * The parent initialises the module, makes a token, logs in, generates a
 * token AES key and a public token data object, encrypts a block, and forks.
 *
 * The child must get CKR_CRYPTOKI_NOT_INITIALIZED from C_GetSlotList (the
 * module's rule after fork), then C_Initialize, find the token (same slot ID),
 * log in, create its own token objects ("child-data", "child-key"), find the
 * parent's objects and get the parent's ciphertext from the parent's key, and
 * exit 0 after C_Finalize.
 *
 * Meanwhile the parent keeps using its session (encrypting, and searching,
 * which reads the store the child writes to). After the child exits it must
 * find the child's objects with C_FindObjectsInit (noticed through the store)
 * and use the child's key.
 *
 * Prints "FAIL: ..." per failed check and exits 1 if any; otherwise prints
 * "STORE FORK PASSED" and exits 0. Both processes arm alarm() so a deadlock
 * fails the run instead of hanging it.
 */
#include "p11_util.c"

#include <signal.h>

static const char *g_path;
static const char *g_so_pin;
static const char *g_user_pin;
static const char *g_who = "parent";

/* The 16-byte block encrypted (the text without its NUL). */
static const char BLOCK[] = "sixteen byte blk";

static void on_alarm(int sig)
{
	(void)sig;
	/* Only async-signal-safe calls here. */
	static const char msg1[] = "FAIL: watchdog: the ";
	static const char msg2[] = " did not finish in time (deadlock?)\n";
	ssize_t r = write(STDOUT_FILENO, msg1, sizeof msg1 - 1);
	r = write(STDOUT_FILENO, g_who, strlen(g_who));
	r = write(STDOUT_FILENO, msg2, sizeof msg2 - 1);
	(void)r;
	_exit(3);
}

static void arm_watchdog(unsigned secs)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(secs);
}

static int finish(void)
{
	fflush(stdout);
	if (g_failures) {
		printf("STORE FORK: %d CHECK(S) FAILED\n", g_failures);
		return 1;
	}
	printf("STORE FORK PASSED\n");
	fflush(stdout);
	return 0;
}

/* Objects labelled `label`: returns how many (up to `max` handles stored in `out`),
 * or -1 after recording a failure. */
static int find_label(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label,
		      CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};
	if (!EXPECT_RV(f->C_FindObjectsInit(s, t, 1), CKR_OK))
		return -1;
	CK_OBJECT_HANDLE buf[16];
	CK_ULONG n = 0, total = 0;
	int ok = 1;
	do {
		if (!EXPECT_RV(f->C_FindObjects(s, buf, 16, &n), CKR_OK)) {
			ok = 0;
			break;
		}
		for (CK_ULONG i = 0; i < n; i++) {
			if (total < max)
				out[total] = buf[i];
			total++;
		}
	} while (n > 0);
	if (!EXPECT_RV(f->C_FindObjectsFinal(s), CKR_OK))
		ok = 0;
	return ok ? (int)total : -1;
}

/* Exactly one object labelled `label`; CK_INVALID_HANDLE after a failure. */
static CK_OBJECT_HANDLE find_one(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s,
				 const char *label)
{
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	int n = find_label(f, s, label, &h, 1);
	if (n != 1) {
		if (n >= 0)
			fail("%s: %d objects labelled \"%s\", expected 1", g_who, n, label);
		return CK_INVALID_HANDLE;
	}
	return h;
}

static CK_OBJECT_HANDLE gen_aes(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
		{CKA_TOKEN, &yes, sizeof yes},
		{CKA_LABEL, (void *)label, strlen(label)},
		{CKA_VALUE_LEN, &len, sizeof len},
		{CKA_ENCRYPT, &yes, sizeof yes},
		{CKA_DECRYPT, &yes, sizeof yes},
	};
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	if (!EXPECT_RV(f->C_GenerateKey(s, &m, t, sizeof t / sizeof t[0], &h), CKR_OK))
		return CK_INVALID_HANDLE;
	return h;
}

static int make_data(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{CKA_CLASS, &cls, sizeof cls},
		{CKA_TOKEN, &yes, sizeof yes},
		{CKA_PRIVATE, &no, sizeof no},
		{CKA_LABEL, (void *)label, strlen(label)},
		{CKA_VALUE, (void *)label, strlen(label)},
	};
	CK_OBJECT_HANDLE h;
	return EXPECT_RV(f->C_CreateObject(s, t, sizeof t / sizeof t[0], &h), CKR_OK);
}

/* AES-ECB of BLOCK under `key` into out[16]; 1 on success. */
static int ecb(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
	       CK_BYTE out[16])
{
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	CK_BYTE in[16];
	memcpy(in, BLOCK, 16);
	CK_ULONG len = 16;
	if (!EXPECT_RV(f->C_EncryptInit(s, &m, key), CKR_OK))
		return 0;
	if (!EXPECT_RV(f->C_Encrypt(s, in, 16, out, &len), CKR_OK))
		return 0;
	if (len != 16) {
		fail("%s: AES-ECB gave %lu bytes", g_who, (unsigned long)len);
		return 0;
	}
	return 1;
}

/* ---- the child --------------------------------------------------------------- */

static void child_main(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID parent_slot, const CK_BYTE pct[16])
{
	g_who = "child";
	g_failures = 0;
	arm_watchdog(20);
	CK_ULONG n = 0;
	EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	CK_C_INITIALIZE_ARGS a = os_locking_args();
	if (!EXPECT_RV(f->C_Initialize(&a), CKR_OK))
		goto out;
	/* Find the token by label: its slot ID is stable. */
	CK_SLOT_ID slots[16];
	n = 16;
	CK_SLOT_ID slot = (CK_SLOT_ID)-1;
	if (EXPECT_RV(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK)) {
		CK_UTF8CHAR want[32];
		pad_label(want, "fork store");
		for (CK_ULONG i = 0; i < n; i++) {
			CK_TOKEN_INFO ti;
			if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
			    memcmp(ti.label, want, 32) == 0)
				slot = slots[i];
		}
	}
	if (slot == (CK_SLOT_ID)-1) {
		fail("child: the parent's token \"fork store\" is not in the slot list");
		goto fin;
	}
	CHECK(slot == parent_slot, "child: token in slot %lu, parent had it in slot %lu",
	      (unsigned long)slot, (unsigned long)parent_slot);
	CK_SESSION_HANDLE s;
	if (!EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
					&s),
		       CKR_OK))
		goto fin;
	if (!EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
		       CKR_OK))
		goto fin;
	make_data(f, s, "child-data");
	gen_aes(f, s, "child-key");
	find_one(f, s, "parent-data");
	CK_OBJECT_HANDLE pk = find_one(f, s, "parent-key");
	CK_BYTE ct[16];
	if (pk != CK_INVALID_HANDLE && ecb(f, s, pk, ct))
		CHECK(memcmp(ct, pct, 16) == 0,
		      "child: the parent's key (reloaded from the store) encrypts differently");
fin:
	EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
out:
	fflush(stdout);
	_exit(g_failures ? 1 : 0);
}

/* ---- the parent -------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <module.so> <so-pin> <user-pin>\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_path = argv[1];
	g_so_pin = argv[2];
	g_user_pin = argv[3];
	arm_watchdog(25);

	CK_FUNCTION_LIST_PTR f = NULL;
	if (!load_module(g_path, &f))
		return finish();
	CK_C_INITIALIZE_ARGS a = os_locking_args();
	if (!EXPECT_RV(f->C_Initialize(&a), CKR_OK))
		return finish();
	CK_SLOT_ID slot = make_token(f, "fork store", g_so_pin, g_user_pin);
	if (slot == (CK_SLOT_ID)-1)
		return finish();
	CK_SESSION_HANDLE s;
	if (!EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
					&s),
		       CKR_OK) ||
	    !EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
		       CKR_OK))
		return finish();
	CK_OBJECT_HANDLE pk = gen_aes(f, s, "parent-key");
	if (pk == CK_INVALID_HANDLE || !make_data(f, s, "parent-data"))
		return finish();
	CK_BYTE pct[16];
	if (!ecb(f, s, pk, pct))
		return finish();

	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return finish();
	}
	if (pid == 0)
		child_main(f, slot, pct);

	/* Parent: keep using the session while the child works. */
	int st = -1, rounds = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0) {
			fail("waitpid: %s", strerror(errno));
			return finish();
		}
		CK_BYTE ct[16];
		if (ecb(f, s, pk, ct))
			CHECK(memcmp(ct, pct, 16) == 0,
			      "parent: its key encrypts differently while the child runs");
		CK_OBJECT_HANDLE h[4];
		find_label(f, s, "parent-data", h, 4);
		rounds++;
		if (g_failures > 10) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return finish();
		}
		usleep(2000);
	}
	note("parent made %d rounds of calls while the child ran", rounds);
	if (WIFSIGNALED(st))
		fail("child killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("child exited with status %d", WEXITSTATUS(st));

	/* The child's objects, noticed through the store. */
	find_one(f, s, "child-data");
	CK_OBJECT_HANDLE ck = find_one(f, s, "child-key");
	CK_BYTE ct[16];
	if (ck != CK_INVALID_HANDLE)
		ecb(f, s, ck, ct);
	find_one(f, s, "parent-key");
	if (ecb(f, s, pk, ct))
		CHECK(memcmp(ct, pct, 16) == 0, "parent: its key encrypts differently after the child");
	CK_SESSION_INFO si;
	if (EXPECT_RV(f->C_GetSessionInfo(s, &si), CKR_OK))
		CHECK(si.state == CKS_RW_USER_FUNCTIONS,
		      "parent: session state %lu after the child, expected CKS_RW_USER_FUNCTIONS",
		      (unsigned long)si.state);
	EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
	return finish();
}
