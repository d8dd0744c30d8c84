/*
 * abi_check: drives libferrohsm_pkcs11.so through the raw C ABI, as a C
 * application built against a standard PKCS#11 header (p11-kit's) would.
 *
 * usage: abi_check <module.so> <so-pin> <user-pin>
 *
 * Prints "FAIL: ..." for every failed check and exits 1 if there was any;
 * prints "ALL CHECKS PASSED" and exits 0 otherwise.
 */
#include "p11_util.c"

#define N_THREADS 8
#define N_ITER 100

static const char *g_so_pin;
static const char *g_user_pin;
static void *g_module_base;

/* Every pointer non-NULL and inside the loaded module. */
static void check_pointers(const char *what, const fh_any_fn *fns, size_t n)
{
	size_t null_count = 0, foreign = 0;
	for (size_t i = 0; i < n; i++) {
		if (!fns[i]) {
			fail("%s: function pointer #%zu is NULL", what, i);
			null_count++;
			continue;
		}
		Dl_info info;
		if (!dladdr((void *)fns[i], &info) || info.dli_fbase != g_module_base) {
			fail("%s: function pointer #%zu (%p) does not point into the module", what,
			     i, (void *)fns[i]);
			foreign++;
		}
	}
	if (!null_count && !foreign)
		note("%s: all %zu function pointers non-NULL and inside the module", what, n);
}

/* Copies the n pointers that follow the CK_VERSION of a function list. */
static void read_pointers(const void *list, fh_any_fn *out, size_t n)
{
	memcpy(out, (const char *)list + offsetof(fh_function_list_3_0, fn),
	       n * sizeof(fh_any_fn));
}

static int same_240_list(const CK_FUNCTION_LIST *a, const CK_FUNCTION_LIST *b)
{
	fh_any_fn pa[FH_N_FUNCS_240], pb[FH_N_FUNCS_240];
	read_pointers(a, pa, FH_N_FUNCS_240);
	read_pointers(b, pb, FH_N_FUNCS_240);
	return a->version.major == b->version.major && a->version.minor == b->version.minor &&
	       memcmp(pa, pb, sizeof pa) == 0;
}

static int is_pkcs11_name(const CK_UTF8CHAR *name)
{
	return name && strcmp((const char *)name, "PKCS 11") == 0;
}

static int no_nul(const CK_UTF8CHAR *p, size_t n)
{
	return memchr(p, 0, n) == NULL;
}

/* ---- function lists and interfaces -------------------------------------- */

static CK_FUNCTION_LIST_PTR check_function_list(void *h)
{
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (!gfl) {
		fail("C_GetFunctionList is not exported: %s", dlerror());
		return NULL;
	}
	Dl_info info;
	if (!dladdr((void *)gfl, &info)) {
		fail("dladdr(C_GetFunctionList) failed");
		return NULL;
	}
	g_module_base = info.dli_fbase;

	EXPECT_RV(gfl(NULL), CKR_ARGUMENTS_BAD);

	CK_FUNCTION_LIST_PTR f = NULL;
	if (!EXPECT_RV(gfl(&f), CKR_OK) || !f) {
		fail("C_GetFunctionList returned no list");
		return NULL;
	}
	CHECK(f->version.major == 2 && f->version.minor == 40,
	      "C_GetFunctionList: list version %u.%u, expected 2.40", f->version.major,
	      f->version.minor);
	fh_any_fn p[FH_N_FUNCS_240];
	read_pointers(f, p, FH_N_FUNCS_240);
	check_pointers("C_GetFunctionList 2.40 list", p, FH_N_FUNCS_240);
	CHECK((void *)f->C_GetFunctionList == (void *)gfl,
	      "2.40 list's C_GetFunctionList differs from the exported symbol");
	return f;
}

static void check_interfaces(void *h, CK_FUNCTION_LIST_PTR f240)
{
	fh_get_interface_list_fn gil = (fh_get_interface_list_fn)dlsym(h, "C_GetInterfaceList");
	fh_get_interface_fn gi = (fh_get_interface_fn)dlsym(h, "C_GetInterface");
	if (!gil)
		fail("C_GetInterfaceList is not exported");
	if (!gi)
		fail("C_GetInterface is not exported");
	if (!gil || !gi)
		return;

	/* C_GetInterfaceList: bad args, size query, too small, fill. */
	EXPECT_RV(gil(NULL, NULL), CKR_ARGUMENTS_BAD);
	CK_ULONG count = 0;
	if (!EXPECT_RV(gil(NULL, &count), CKR_OK))
		return;
	CHECK(count >= 2, "C_GetInterfaceList: count %lu, expected at least 2 (3.0 and 2.40)",
	      (unsigned long)count);
	if (count < 1 || count > 64)
		return;
	fh_interface *list = calloc(count + 1, sizeof *list);
	if (count >= 2) {
		CK_ULONG small = count - 1;
		EXPECT_RV(gil(list, &small), CKR_BUFFER_TOO_SMALL);
		CHECK(small == count,
		      "C_GetInterfaceList with a short buffer set *pulCount to %lu, expected %lu",
		      (unsigned long)small, (unsigned long)count);
	}
	CK_ULONG filled = count + 1;
	if (!EXPECT_RV(gil(list, &filled), CKR_OK)) {
		free(list);
		return;
	}
	CHECK(filled == count, "C_GetInterfaceList filled %lu entries, size query said %lu",
	      (unsigned long)filled, (unsigned long)count);

	fh_function_list_3_0 *l30 = NULL;
	CK_FUNCTION_LIST *l240 = NULL;
	for (CK_ULONG i = 0; i < filled; i++) {
		fh_interface *it = &list[i];
		const char *nm = it->pInterfaceName ? (const char *)it->pInterfaceName : "(null)";
		if (!is_pkcs11_name(it->pInterfaceName))
			fail("interface #%lu is named \"%s\", expected \"PKCS 11\"",
			     (unsigned long)i, nm);
		if (!it->pFunctionList) {
			fail("interface #%lu (\"%s\") has a NULL pFunctionList", (unsigned long)i,
			     nm);
			continue;
		}
		CK_VERSION *v = (CK_VERSION *)it->pFunctionList;
		if (v->major == 3 && v->minor == 0) {
			if (l30)
				fail("two interfaces with version 3.0");
			l30 = (fh_function_list_3_0 *)it->pFunctionList;
		} else if (v->major == 2 && v->minor == 40) {
			if (l240)
				fail("two interfaces with version 2.40");
			l240 = (CK_FUNCTION_LIST *)it->pFunctionList;
		} else {
			fail("interface #%lu (\"%s\") has unexpected version %u.%u",
			     (unsigned long)i, nm, v->major, v->minor);
		}
	}
	if (!l30)
		fail("C_GetInterfaceList has no \"PKCS 11\" interface with version 3.0");
	if (!l240)
		fail("C_GetInterfaceList has no \"PKCS 11\" interface with version 2.40");
	if (l30) {
		fh_any_fn p[FH_N_FUNCS_30];
		read_pointers(l30, p, FH_N_FUNCS_30);
		check_pointers("3.0 interface list", p, FH_N_FUNCS_30);
		/* Call through the list: its C_GetInterfaceList must agree. */
		if (p[FH_IDX_C_GETINTERFACELIST]) {
			CK_ULONG c2 = 0;
			EXPECT_RV(((fh_get_interface_list_fn)p[FH_IDX_C_GETINTERFACELIST])(NULL,
											 &c2),
				  CKR_OK);
			CHECK(c2 == count,
			      "3.0 list's C_GetInterfaceList counts %lu, exported one %lu",
			      (unsigned long)c2, (unsigned long)count);
		}
		if (p[FH_IDX_C_GETFUNCTIONLIST]) {
			CK_FUNCTION_LIST_PTR via = NULL;
			EXPECT_RV(((CK_C_GetFunctionList)p[FH_IDX_C_GETFUNCTIONLIST])(&via),
				  CKR_OK);
			CHECK(via && same_240_list(via, f240),
			      "3.0 list's C_GetFunctionList does not give the 2.40 list");
		}
	}
	if (l240) {
		fh_any_fn p[FH_N_FUNCS_240];
		read_pointers(l240, p, FH_N_FUNCS_240);
		check_pointers("2.40 interface list", p, FH_N_FUNCS_240);
		CHECK(same_240_list(l240, f240),
		      "2.40 interface list differs from the C_GetFunctionList list");
	}

	/* C_GetInterface */
	fh_interface *it = NULL;
	EXPECT_RV(gi(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
	if (EXPECT_RV(gi(NULL, NULL, &it, 0), CKR_OK)) {
		if (!it || !it->pFunctionList) {
			fail("C_GetInterface(NULL, NULL) returned no interface");
		} else {
			CK_VERSION *v = (CK_VERSION *)it->pFunctionList;
			CHECK(is_pkcs11_name(it->pInterfaceName),
			      "C_GetInterface(NULL, NULL): name is not \"PKCS 11\"");
			CHECK(v->major == 3 && v->minor == 0,
			      "C_GetInterface(NULL, NULL): default list has version %u.%u, "
			      "expected 3.0",
			      v->major, v->minor);
			CHECK(!l30 || it->pFunctionList == (void *)l30,
			      "C_GetInterface(NULL, NULL) list is not the 3.0 list of "
			      "C_GetInterfaceList");
		}
	}
	CK_VERSION v240 = {2, 40};
	it = NULL;
	if (EXPECT_RV(gi((CK_UTF8CHAR *)"PKCS 11", &v240, &it, 0), CKR_OK)) {
		if (!it || !it->pFunctionList) {
			fail("C_GetInterface(\"PKCS 11\", 2.40) returned no interface");
		} else {
			CK_FUNCTION_LIST *l = (CK_FUNCTION_LIST *)it->pFunctionList;
			CHECK(l->version.major == 2 && l->version.minor == 40,
			      "C_GetInterface(\"PKCS 11\", 2.40): list version %u.%u",
			      l->version.major, l->version.minor);
			CHECK(same_240_list(l, f240),
			      "C_GetInterface(\"PKCS 11\", 2.40) is not the 2.40 list");
		}
	}
	it = NULL;
	if (EXPECT_RV(gi(NULL, &v240, &it, 0), CKR_OK)) {
		CHECK(it && it->pFunctionList &&
			      ((CK_VERSION *)it->pFunctionList)->major == 2 &&
			      ((CK_VERSION *)it->pFunctionList)->minor == 40,
		      "C_GetInterface(NULL, 2.40) did not give a 2.40 list");
	}
	CK_VERSION v30 = {3, 0};
	it = NULL;
	if (EXPECT_RV(gi((CK_UTF8CHAR *)"PKCS 11", &v30, &it, 0), CKR_OK)) {
		CHECK(it && it->pFunctionList && (!l30 || it->pFunctionList == (void *)l30),
		      "C_GetInterface(\"PKCS 11\", 3.0) did not give the 3.0 list");
	}
	/* Interfaces the module does not have must not be reported as found. */
	CK_VERSION v10 = {1, 0};
	it = NULL;
	CK_RV rv = gi((CK_UTF8CHAR *)"PKCS 11", &v10, &it, 0);
	CHECK(rv != CKR_OK, "C_GetInterface(\"PKCS 11\", 1.0) returned CKR_OK for a version "
			    "the module does not implement");
	it = NULL;
	rv = gi((CK_UTF8CHAR *)"No Such Interface", NULL, &it, 0);
	CHECK(rv != CKR_OK, "C_GetInterface(\"No Such Interface\") returned CKR_OK");
	free(list);
}

/* ---- worker threads -------------------------------------------------------- */

struct worker {
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	int id;
	pthread_t tid;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	CK_FUNCTION_LIST_PTR f = w->f;
	char who[32];
	snprintf(who, sizeof who, "thread %d", w->id);

	CK_SESSION_HANDLE s;
	CK_RV rv = f->C_OpenSession(w->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		fail("%s: C_OpenSession returned %s (0x%lx)", who, ckr_name(rv),
		     (unsigned long)rv);
		return NULL;
	}
	CK_SESSION_INFO si;
	if (EXPECT_RV(f->C_GetSessionInfo(s, &si), CKR_OK)) {
		CHECK(si.slotID == w->slot, "%s: session slotID %lu, expected %lu", who,
		      (unsigned long)si.slotID, (unsigned long)w->slot);
		/* The application is logged in as user: every new R/O session is too. */
		CHECK(si.state == CKS_RO_USER_FUNCTIONS,
		      "%s: new R/O session state %lu, expected CKS_RO_USER_FUNCTIONS (1)", who,
		      (unsigned long)si.state);
	}

	unsigned char prev[64], cur[64];
	memset(prev, 0, sizeof prev);
	const struct kat *k = &ABC_KATS[w->id % N_KATS];
	int errors = 0;
	for (int it = 0; it < N_ITER && errors < 5; it++) {
		/* Random */
		rv = f->C_GenerateRandom(s, cur, sizeof cur);
		if (rv != CKR_OK) {
			fail("%s: C_GenerateRandom returned %s (0x%lx)", who, ckr_name(rv),
			     (unsigned long)rv);
			errors++;
			continue;
		}
		if (all_zero(cur, sizeof cur)) {
			fail("%s: C_GenerateRandom gave 64 zero bytes", who);
			errors++;
		}
		if (memcmp(prev, cur, sizeof cur) == 0) {
			fail("%s: C_GenerateRandom repeated its previous output", who);
			errors++;
		}
		memcpy(prev, cur, sizeof cur);

		/* SHA-256("abc") with the length query first. */
		CK_MECHANISM m = {CKM_SHA256, NULL, 0};
		if (!EXPECT_RV(f->C_DigestInit(s, &m), CKR_OK)) {
			errors++;
			continue;
		}
		CK_ULONG len = 0;
		if (!EXPECT_RV(f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, NULL, &len), CKR_OK)) {
			errors++;
			continue;
		}
		if (len != 32) {
			fail("%s: C_Digest(NULL) length query gave %lu, expected 32", who,
			     (unsigned long)len);
			errors++;
		}
		/* Too small a buffer: CKR_BUFFER_TOO_SMALL, length set, operation kept. */
		unsigned char out[64];
		len = 16;
		if (EXPECT_RV(f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len),
			      CKR_BUFFER_TOO_SMALL))
			CHECK(len == 32, "%s: CKR_BUFFER_TOO_SMALL set length %lu, expected 32",
			      who, (unsigned long)len);
		else
			errors++;
		len = sizeof out;
		if (!EXPECT_RV(f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OK)) {
			errors++;
			continue;
		}
		char got[129];
		hex(out, len, got);
		if (len != 32 || strcmp(got, KAT_SHA256->hex) != 0) {
			fail("%s: SHA-256(\"abc\") = %s, expected %s", who, got, KAT_SHA256->hex);
			errors++;
		}
		/* A successful C_Digest ends the operation. */
		len = sizeof out;
		if (!EXPECT_RV(f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len),
			       CKR_OPERATION_NOT_INITIALIZED))
			errors++;

		/* Multi-part digest with this thread's algorithm. */
		m.mechanism = k->mech;
		if (!EXPECT_RV(f->C_DigestInit(s, &m), CKR_OK) ||
		    !EXPECT_RV(f->C_DigestUpdate(s, (CK_BYTE_PTR) "a", 1), CKR_OK) ||
		    !EXPECT_RV(f->C_DigestUpdate(s, (CK_BYTE_PTR) "bc", 2), CKR_OK)) {
			errors++;
			continue;
		}
		len = 0;
		if (!EXPECT_RV(f->C_DigestFinal(s, NULL, &len), CKR_OK)) {
			errors++;
			continue;
		}
		CHECK(len == k->len, "%s: C_DigestFinal(NULL) %s length %lu, expected %lu", who,
		      k->name, (unsigned long)len, (unsigned long)k->len);
		len = sizeof out;
		if (!EXPECT_RV(f->C_DigestFinal(s, out, &len), CKR_OK)) {
			errors++;
			continue;
		}
		hex(out, len, got);
		if (strcmp(got, k->hex) != 0) {
			fail("%s: multi-part %s(\"abc\") = %s, expected %s", who, k->name, got,
			     k->hex);
			errors++;
		}
	}
	EXPECT_RV(f->C_CloseSession(s), CKR_OK);
	return NULL;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s <module.so> <so-pin> <user-pin>\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	g_so_pin = argv[2];
	g_user_pin = argv[3];

	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fail("dlopen(%s): %s", argv[1], dlerror());
		return 1;
	}
	CK_FUNCTION_LIST_PTR f = check_function_list(h);
	if (!f)
		return 1;
	check_interfaces(h, f);

	/* Before C_Initialize. */
	CK_ULONG n = 0;
	EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);

	CK_C_INITIALIZE_ARGS args = os_locking_args();
	if (!EXPECT_RV(f->C_Initialize(&args), CKR_OK))
		return 1;
	EXPECT_RV(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	EXPECT_RV(f->C_Initialize(&args), CKR_CRYPTOKI_ALREADY_INITIALIZED);

	CK_INFO info;
	if (EXPECT_RV(f->C_GetInfo(&info), CKR_OK)) {
		CHECK(info.flags == 0, "CK_INFO.flags = 0x%lx, must be zero",
		      (unsigned long)info.flags);
		CHECK(no_nul(info.manufacturerID, 32),
		      "CK_INFO.manufacturerID contains a NUL (must be blank padded)");
		CHECK(no_nul(info.libraryDescription, 32),
		      "CK_INFO.libraryDescription contains a NUL (must be blank padded)");
		CHECK((info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40) ||
			      (info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 0),
		      "CK_INFO.cryptokiVersion %u.%u is neither 2.40 nor 3.0",
		      info.cryptokiVersion.major, info.cryptokiVersion.minor);
	}

	/* Slots of a fresh process: just the spare. */
	n = 0;
	if (!EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK))
		return 1;
	CHECK(n == 1, "fresh process: C_GetSlotList counts %lu slots, expected 1 (the spare)",
	      (unsigned long)n);
	if (n < 1 || n > 64)
		return 1;
	CK_SLOT_ID slots[66];
	CK_ULONG cap = n;
	if (!EXPECT_RV(f->C_GetSlotList(CK_FALSE, slots, &cap), CKR_OK))
		return 1;
	CK_SLOT_ID spare = slots[cap - 1];
	CK_ULONG np = 0;
	EXPECT_RV(f->C_GetSlotList(CK_TRUE, NULL, &np), CKR_OK);
	CHECK(np == n, "C_GetSlotList(tokenPresent) counts %lu, all slots %lu (the spare "
		       "slot's token is present)",
	      (unsigned long)np, (unsigned long)n);

	CK_SLOT_INFO sinfo;
	if (EXPECT_RV(f->C_GetSlotInfo(spare, &sinfo), CKR_OK)) {
		CHECK(sinfo.flags & CKF_TOKEN_PRESENT, "spare slot: CKF_TOKEN_PRESENT not set");
		CHECK(no_nul(sinfo.slotDescription, 64) && no_nul(sinfo.manufacturerID, 32),
		      "CK_SLOT_INFO strings contain a NUL (must be blank padded)");
	}
	CK_TOKEN_INFO tinfo;
	if (EXPECT_RV(f->C_GetTokenInfo(spare, &tinfo), CKR_OK))
		CHECK(!(tinfo.flags & CKF_TOKEN_INITIALIZED),
		      "spare slot's token has CKF_TOKEN_INITIALIZED");
	CK_SESSION_HANDLE s;
	EXPECT_RV(f->C_OpenSession(spare, CKF_SERIAL_SESSION, NULL, NULL, &s),
		  CKR_TOKEN_NOT_RECOGNIZED);

	/* C_InitToken on the spare. */
	const char *label = "abi-check token";
	CK_UTF8CHAR lab[32];
	pad_label(lab, label);
	if (!EXPECT_RV(f->C_InitToken(spare, (CK_UTF8CHAR *)g_so_pin, strlen(g_so_pin), lab),
		       CKR_OK))
		return 1;
	CK_SLOT_ID tok = spare;
	n = 0;
	EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	CHECK(n == 2, "after C_InitToken: %lu slots, expected 2 (token + new spare)",
	      (unsigned long)n);
	cap = n <= 64 ? n : 64;
	if (EXPECT_RV(f->C_GetSlotList(CK_FALSE, slots, &cap), CKR_OK) && cap >= 2) {
		CHECK(slots[0] == tok, "after C_InitToken: first slot is %lu, expected %lu",
		      (unsigned long)slots[0], (unsigned long)tok);
		CHECK(slots[cap - 1] != tok, "after C_InitToken: no new spare slot listed last");
		CK_TOKEN_INFO ns;
		if (EXPECT_RV(f->C_GetTokenInfo(slots[cap - 1], &ns), CKR_OK))
			CHECK(!(ns.flags & CKF_TOKEN_INITIALIZED),
			      "new spare slot's token is already initialised");
		EXPECT_RV(f->C_OpenSession(slots[cap - 1], CKF_SERIAL_SESSION, NULL, NULL, &s),
			  CKR_TOKEN_NOT_RECOGNIZED);
	}
	if (EXPECT_RV(f->C_GetTokenInfo(tok, &tinfo), CKR_OK)) {
		CHECK(tinfo.flags & CKF_TOKEN_INITIALIZED,
		      "initialised token lacks CKF_TOKEN_INITIALIZED");
		CHECK(!(tinfo.flags & CKF_USER_PIN_INITIALIZED),
		      "CKF_USER_PIN_INITIALIZED set before C_InitPIN");
		CHECK(memcmp(tinfo.label, lab, 32) == 0, "token label is \"%.32s\", expected \"%.32s\"",
		      (const char *)tinfo.label, (const char *)lab);
		CHECK(no_nul(tinfo.label, 32) && no_nul(tinfo.manufacturerID, 32) &&
			      no_nul(tinfo.model, 16) && no_nul(tinfo.serialNumber, 16),
		      "CK_TOKEN_INFO strings contain a NUL (must be blank padded)");
	}

	/* SO login + C_InitPIN */
	if (!EXPECT_RV(f->C_OpenSession(tok, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
		       CKR_OK))
		return 1;
	EXPECT_RV(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)"wrong-pin", 9), CKR_PIN_INCORRECT);
	if (!EXPECT_RV(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)g_so_pin, strlen(g_so_pin)), CKR_OK))
		return 1;
	CK_SESSION_INFO si;
	if (EXPECT_RV(f->C_GetSessionInfo(s, &si), CKR_OK))
		CHECK(si.state == CKS_RW_SO_FUNCTIONS,
		      "after SO login the session state is %lu, expected CKS_RW_SO_FUNCTIONS (4)",
		      (unsigned long)si.state);
	EXPECT_RV(f->C_InitPIN(s, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)), CKR_OK);
	EXPECT_RV(f->C_Logout(s), CKR_OK);
	if (EXPECT_RV(f->C_GetTokenInfo(tok, &tinfo), CKR_OK))
		CHECK(tinfo.flags & CKF_USER_PIN_INITIALIZED,
		      "CKF_USER_PIN_INITIALIZED not set after C_InitPIN");
	EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"wrong-pin", 9), CKR_PIN_INCORRECT);
	if (!EXPECT_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)g_user_pin, strlen(g_user_pin)),
		       CKR_OK))
		return 1;
	if (EXPECT_RV(f->C_GetSessionInfo(s, &si), CKR_OK))
		CHECK(si.state == CKS_RW_USER_FUNCTIONS,
		      "after user login the session state is %lu, expected "
		      "CKS_RW_USER_FUNCTIONS (3)",
		      (unsigned long)si.state);

	/* Threads */
	struct worker w[N_THREADS];
	for (int i = 0; i < N_THREADS; i++) {
		w[i].f = f;
		w[i].slot = tok;
		w[i].id = i;
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fail("pthread_create failed");
			return 1;
		}
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(w[i].tid, NULL);
	note("%d threads x %d iterations of random + digest done", N_THREADS, N_ITER);

	EXPECT_RV(f->C_Logout(s), CKR_OK);
	EXPECT_RV(f->C_CloseSession(s), CKR_OK);
	EXPECT_RV(f->C_Finalize((void *)&args), CKR_ARGUMENTS_BAD);
	EXPECT_RV(f->C_Finalize(NULL), CKR_OK);
	EXPECT_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT_RV(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);

	if (g_failures) {
		printf("%d CHECK(S) FAILED\n", g_failures);
		return 1;
	}
	printf("ALL CHECKS PASSED\n");
	return 0;
}
