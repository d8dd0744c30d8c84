/*
 * Shared helpers for the FerroHSM C test programs (abi_check.c and
 * process_life.c). Included textually by them: `#include "p11_util.c"`.
 *
 * Built against p11-kit's standard PKCS#11 header. Debian 12's p11-kit
 * (0.24) has only the 2.40 types, so the few PKCS#11 3.0 types the tests need
 * (CK_INTERFACE, the 3.0 function list) are declared here under local names
 * with the layout of the OASIS 3.0 header.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define UNUSED __attribute__((unused))

/* ---- PKCS#11 3.0 pieces missing from p11-kit 0.24 ---------------------- */

/* CK_INTERFACE (PKCS#11 3.0, section 3.5). */
typedef struct fh_interface {
	CK_UTF8CHAR *pInterfaceName;
	void *pFunctionList;
	CK_FLAGS flags;
} fh_interface;

typedef CK_RV (*fh_get_interface_list_fn)(fh_interface *list, CK_ULONG *count);
typedef CK_RV (*fh_get_interface_fn)(CK_UTF8CHAR *name, CK_VERSION *version,
				     fh_interface **iface, CK_FLAGS flags);
typedef void (*fh_any_fn)(void);

/* Number of function pointers in CK_FUNCTION_LIST (2.40) and CK_FUNCTION_LIST_3_0. */
#define FH_N_FUNCS_240 68
#define FH_N_FUNCS_30 92

/* CK_FUNCTION_LIST_3_0: a CK_VERSION followed by 92 function pointers. */
typedef struct fh_function_list_3_0 {
	CK_VERSION version;
	fh_any_fn fn[FH_N_FUNCS_30];
} fh_function_list_3_0;

/* Indexes into the 3.0 list (after the version). The first 68 are the 2.40 ones. */
#define FH_IDX_C_GETFUNCTIONLIST 3
#define FH_IDX_C_GETINTERFACELIST 68
#define FH_IDX_C_GETINTERFACE 69

_Static_assert((sizeof(CK_FUNCTION_LIST) - offsetof(CK_FUNCTION_LIST, C_Initialize)) /
			       sizeof(void *) ==
		       FH_N_FUNCS_240,
	       "p11-kit's CK_FUNCTION_LIST must hold 68 function pointers");
_Static_assert(offsetof(CK_FUNCTION_LIST, C_Initialize) ==
		       offsetof(fh_function_list_3_0, fn),
	       "2.40 and 3.0 lists must start their pointers at the same offset");

/* ---- failure accounting --------------------------------------------------- */

static int g_failures;
static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;

static UNUSED void fail(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&g_fail_lock);
	g_failures++;
	fprintf(stdout, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fprintf(stdout, "\n");
	fflush(stdout);
	pthread_mutex_unlock(&g_fail_lock);
}

static UNUSED void note(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&g_fail_lock);
	fprintf(stdout, "ok: ");
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fprintf(stdout, "\n");
	fflush(stdout);
	pthread_mutex_unlock(&g_fail_lock);
}

static UNUSED const char *ckr_name(CK_RV rv)
{
	switch (rv) {
#define N(x) \
	case x:  \
		return #x;
		N(CKR_OK)
		N(CKR_CANCEL)
		N(CKR_HOST_MEMORY)
		N(CKR_SLOT_ID_INVALID)
		N(CKR_GENERAL_ERROR)
		N(CKR_FUNCTION_FAILED)
		N(CKR_ARGUMENTS_BAD)
		N(CKR_CANT_LOCK)
		N(CKR_DATA_LEN_RANGE)
		N(CKR_DEVICE_ERROR)
		N(CKR_FUNCTION_NOT_SUPPORTED)
		N(CKR_MECHANISM_INVALID)
		N(CKR_MECHANISM_PARAM_INVALID)
		N(CKR_OPERATION_ACTIVE)
		N(CKR_OPERATION_NOT_INITIALIZED)
		N(CKR_PIN_INCORRECT)
		N(CKR_PIN_INVALID)
		N(CKR_PIN_LEN_RANGE)
		N(CKR_PIN_LOCKED)
		N(CKR_SESSION_CLOSED)
		N(CKR_SESSION_COUNT)
		N(CKR_SESSION_HANDLE_INVALID)
		N(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
		N(CKR_SESSION_READ_ONLY)
		N(CKR_SESSION_EXISTS)
		N(CKR_SESSION_READ_ONLY_EXISTS)
		N(CKR_SESSION_READ_WRITE_SO_EXISTS)
		N(CKR_TOKEN_NOT_PRESENT)
		N(CKR_TOKEN_NOT_RECOGNIZED)
		N(CKR_TOKEN_WRITE_PROTECTED)
		N(CKR_USER_ALREADY_LOGGED_IN)
		N(CKR_USER_NOT_LOGGED_IN)
		N(CKR_USER_PIN_NOT_INITIALIZED)
		N(CKR_USER_TYPE_INVALID)
		N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
		N(CKR_RANDOM_NO_RNG)
		N(CKR_BUFFER_TOO_SMALL)
		N(CKR_CRYPTOKI_NOT_INITIALIZED)
		N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
		N(CKR_MUTEX_BAD)
		N(CKR_MUTEX_NOT_LOCKED)
#undef N
	default:
		return "CKR_<unknown>";
	}
}

/* Checks `rv == want`; on mismatch records a failure naming the call. Returns 1 if ok. */
#define EXPECT_RV(call, want)                                                       \
	expect_rv_at(__FILE__, __LINE__, #call, (call), (want))

static UNUSED int expect_rv_at(const char *file, int line, const char *what, CK_RV got,
			       CK_RV want)
{
	if (got == want)
		return 1;
	fail("%s:%d: %s returned %s (0x%lx), expected %s (0x%lx)", file, line, what,
	     ckr_name(got), (unsigned long)got, ckr_name(want), (unsigned long)want);
	return 0;
}

#define CHECK(cond, ...)                                         \
	do {                                                     \
		if (!(cond))                                     \
			fail(__VA_ARGS__);                       \
	} while (0)

static UNUSED void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

/* Known answers for "abc" (FIPS 180-4 examples). */
struct kat {
	CK_MECHANISM_TYPE mech;
	const char *name;
	CK_ULONG len;
	const char *hex;
};
static UNUSED const struct kat ABC_KATS[] = {
	{CKM_SHA_1, "SHA-1", 20, "a9993e364706816aba3e25717850c26c9cd0d89d"},
	{CKM_SHA224, "SHA-224", 28, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"},
	{CKM_SHA256, "SHA-256", 32,
	 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	{CKM_SHA384, "SHA-384", 48,
	 "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163"
	 "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"},
	{CKM_SHA512, "SHA-512", 64,
	 "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
	 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
};
#define N_KATS (sizeof(ABC_KATS) / sizeof(ABC_KATS[0]))
#define KAT_SHA256 (&ABC_KATS[2])

/* ---- module loading ------------------------------------------------------- */

static UNUSED void *load_module(const char *path, CK_FUNCTION_LIST_PTR *out)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fail("dlopen(%s): %s", path, dlerror());
		return NULL;
	}
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (!gfl) {
		fail("dlsym(C_GetFunctionList): %s", dlerror());
		return NULL;
	}
	CK_FUNCTION_LIST_PTR f = NULL;
	if (!EXPECT_RV(gfl(&f), CKR_OK) || !f) {
		fail("C_GetFunctionList gave no list");
		return NULL;
	}
	*out = f;
	return h;
}

static UNUSED CK_C_INITIALIZE_ARGS os_locking_args(void)
{
	CK_C_INITIALIZE_ARGS a;
	memset(&a, 0, sizeof a);
	a.flags = CKF_OS_LOCKING_OK;
	a.pReserved = NULL;
	return a;
}

/* Blank-padded 32-byte label. */
static UNUSED void pad_label(CK_UTF8CHAR out[32], const char *label)
{
	memset(out, ' ', 32);
	size_t n = strlen(label);
	memcpy(out, label, n > 32 ? 32 : n);
}

/*
 * Returns the ID of the spare slot (the one whose token is not initialised),
 * or (CK_SLOT_ID)-1 after recording a failure.
 */
static UNUSED CK_SLOT_ID find_spare_slot(CK_FUNCTION_LIST_PTR f)
{
	CK_ULONG n = 0;
	if (!EXPECT_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK))
		return (CK_SLOT_ID)-1;
	if (n == 0) {
		fail("C_GetSlotList reports 0 slots; the spare slot is missing");
		return (CK_SLOT_ID)-1;
	}
	CK_SLOT_ID *slots = calloc(n, sizeof *slots);
	if (!EXPECT_RV(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK)) {
		free(slots);
		return (CK_SLOT_ID)-1;
	}
	CK_SLOT_ID spare = (CK_SLOT_ID)-1;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    !(ti.flags & CKF_TOKEN_INITIALIZED))
			spare = slots[i];
	}
	free(slots);
	if (spare == (CK_SLOT_ID)-1)
		fail("no slot with an uninitialised token (spare slot) in C_GetSlotList");
	return spare;
}

/*
 * Initialises the token in the spare slot and sets its user PIN
 * (SO login + C_InitPIN). Returns the slot ID or (CK_SLOT_ID)-1.
 */
static UNUSED CK_SLOT_ID make_token(CK_FUNCTION_LIST_PTR f, const char *label,
				    const char *so_pin, const char *user_pin)
{
	CK_SLOT_ID slot = find_spare_slot(f);
	if (slot == (CK_SLOT_ID)-1)
		return slot;
	CK_UTF8CHAR lab[32];
	pad_label(lab, label);
	if (!EXPECT_RV(f->C_InitToken(slot, (CK_UTF8CHAR *)so_pin, strlen(so_pin), lab),
		       CKR_OK))
		return (CK_SLOT_ID)-1;
	CK_SESSION_HANDLE s;
	if (!EXPECT_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
					&s),
		       CKR_OK))
		return (CK_SLOT_ID)-1;
	int ok = EXPECT_RV(f->C_Login(s, CKU_SO, (CK_UTF8CHAR *)so_pin, strlen(so_pin)),
			   CKR_OK) &&
		 EXPECT_RV(f->C_InitPIN(s, (CK_UTF8CHAR *)user_pin, strlen(user_pin)),
			   CKR_OK) &&
		 EXPECT_RV(f->C_Logout(s), CKR_OK);
	EXPECT_RV(f->C_CloseSession(s), CKR_OK);
	return ok ? slot : (CK_SLOT_ID)-1;
}

/* Single-part digest of "abc" with the given KAT; returns 1 if correct. */
static UNUSED int digest_abc(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const struct kat *k,
			     const char *who)
{
	CK_MECHANISM m = {k->mech, NULL, 0};
	unsigned char out[64];
	char got[129];
	CK_ULONG len = sizeof out;
	CK_RV rv = f->C_DigestInit(s, &m);
	if (rv != CKR_OK) {
		fail("%s: C_DigestInit(%s) returned %s (0x%lx)", who, k->name, ckr_name(rv),
		     (unsigned long)rv);
		return 0;
	}
	rv = f->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len);
	if (rv != CKR_OK) {
		fail("%s: C_Digest(%s) returned %s (0x%lx)", who, k->name, ckr_name(rv),
		     (unsigned long)rv);
		return 0;
	}
	if (len != k->len) {
		fail("%s: C_Digest(%s) length %lu, expected %lu", who, k->name,
		     (unsigned long)len, (unsigned long)k->len);
		return 0;
	}
	hex(out, len, got);
	if (strcmp(got, k->hex) != 0) {
		fail("%s: %s(\"abc\") = %s, expected %s", who, k->name, got, k->hex);
		return 0;
	}
	return 1;
}

static UNUSED int all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}
