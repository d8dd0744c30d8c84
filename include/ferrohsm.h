/*
 * ferrohsm.h - FerroHSM vendor-defined PKCS#11 constants.
 *
 * Include after a standard pkcs11.h (p11-kit ships one):
 *     #include <p11-kit/pkcs11.h>
 *     #include "ferrohsm.h"
 *
 * Vendor-defined CKA_/CKR_/CKM_ values, when FerroHSM adds any, will lie in the
 * vendor range (CKx_VENDOR_DEFINED and up) and stay stable once released.
 */
#ifndef FERROHSM_H
#define FERROHSM_H

/* Token key policies, as reported in logs and by the ferrohsm tool:
 *   hsm  - every private/secret key is sensitive; extractable defaults to FALSE.
 *   spec - the PKCS#11 specification's own defaults. */
#define FERROHSM_POLICY_HSM  "hsm"
#define FERROHSM_POLICY_SPEC "spec"

/* Environment variables the module reads at C_Initialize. */
#define FERROHSM_ENV_DIR    "FERROHSM_DIR"    /* data directory */
#define FERROHSM_ENV_CONF   "FERROHSM_CONF"   /* TOML config file */
#define FERROHSM_ENV_POLICY "FERROHSM_POLICY" /* policy of tokens made by C_InitToken */
#define FERROHSM_ENV_LOG    "FERROHSM_LOG"    /* LEVEL or LEVEL:FILE */

/* Vendor attribute holding the Unix time after which a destroyed key is purged
 * (deletion waiting period of hsm tokens). It lives only inside the sealed
 * record of a key scheduled for deletion; applications never see such a key,
 * and a template naming this attribute is refused (CKR_ATTRIBUTE_TYPE_INVALID). */
#define CKA_FERROHSM_DELETE_AT (0x80000000UL | 0x46480001UL)

#endif /* FERROHSM_H */
