//! Errors as values: one variant per `CKR_*` the module returns, mapped to
//! `CK_RV` in exactly one place (`Error::rv`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;

macro_rules! errors {
    ($($variant:ident => $ckr:ident,)*) => {
        /// A PKCS#11 failure, named after the `CKR_*` code it maps to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Error {
            $(
                #[doc = concat!("`", stringify!($ckr), "`")]
                $variant,
            )*
        }

        impl Error {
            /// The `CK_RV` the C caller sees.
            pub fn rv(self) -> CK_RV {
                match self {
                    $(Error::$variant => $ckr,)*
                }
            }

            /// The `CKR_*` name, for log lines.
            pub fn name(self) -> &'static str {
                match self {
                    $(Error::$variant => stringify!($ckr),)*
                }
            }

            /// Every variant (for tests that check the mapping is one-to-one).
            pub const ALL: &'static [Error] = &[$(Error::$variant,)*];
        }
    };
}

errors! {
    ArgumentsBad => CKR_ARGUMENTS_BAD,
    GeneralError => CKR_GENERAL_ERROR,
    HostMemory => CKR_HOST_MEMORY,
    FunctionFailed => CKR_FUNCTION_FAILED,
    CryptokiNotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
    CryptokiAlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
    CantLock => CKR_CANT_LOCK,
    FunctionNotSupported => CKR_FUNCTION_NOT_SUPPORTED,
    FunctionNotParallel => CKR_FUNCTION_NOT_PARALLEL,
    SlotIdInvalid => CKR_SLOT_ID_INVALID,
    TokenNotPresent => CKR_TOKEN_NOT_PRESENT,
    TokenNotRecognized => CKR_TOKEN_NOT_RECOGNIZED,
    TokenWriteProtected => CKR_TOKEN_WRITE_PROTECTED,
    SessionHandleInvalid => CKR_SESSION_HANDLE_INVALID,
    SessionClosed => CKR_SESSION_CLOSED,
    SessionCount => CKR_SESSION_COUNT,
    SessionParallelNotSupported => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    SessionReadOnly => CKR_SESSION_READ_ONLY,
    SessionExists => CKR_SESSION_EXISTS,
    SessionReadOnlyExists => CKR_SESSION_READ_ONLY_EXISTS,
    SessionReadWriteSoExists => CKR_SESSION_READ_WRITE_SO_EXISTS,
    OperationActive => CKR_OPERATION_ACTIVE,
    OperationNotInitialized => CKR_OPERATION_NOT_INITIALIZED,
    MechanismInvalid => CKR_MECHANISM_INVALID,
    MechanismParamInvalid => CKR_MECHANISM_PARAM_INVALID,
    KeyHandleInvalid => CKR_KEY_HANDLE_INVALID,
    KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
    KeySizeRange => CKR_KEY_SIZE_RANGE,
    KeyFunctionNotPermitted => CKR_KEY_FUNCTION_NOT_PERMITTED,
    KeyIndigestible => CKR_KEY_INDIGESTIBLE,
    KeyNotWrappable => CKR_KEY_NOT_WRAPPABLE,
    KeyUnextractable => CKR_KEY_UNEXTRACTABLE,
    KeyNeeded => CKR_KEY_NEEDED,
    KeyNotNeeded => CKR_KEY_NOT_NEEDED,
    KeyChanged => CKR_KEY_CHANGED,
    ObjectHandleInvalid => CKR_OBJECT_HANDLE_INVALID,
    AttributeReadOnly => CKR_ATTRIBUTE_READ_ONLY,
    AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
    AttributeTypeInvalid => CKR_ATTRIBUTE_TYPE_INVALID,
    AttributeValueInvalid => CKR_ATTRIBUTE_VALUE_INVALID,
    TemplateIncomplete => CKR_TEMPLATE_INCOMPLETE,
    TemplateInconsistent => CKR_TEMPLATE_INCONSISTENT,
    ActionProhibited => CKR_ACTION_PROHIBITED,
    PinIncorrect => CKR_PIN_INCORRECT,
    PinInvalid => CKR_PIN_INVALID,
    PinLenRange => CKR_PIN_LEN_RANGE,
    PinExpired => CKR_PIN_EXPIRED,
    PinLocked => CKR_PIN_LOCKED,
    UserAlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
    UserNotLoggedIn => CKR_USER_NOT_LOGGED_IN,
    UserPinNotInitialized => CKR_USER_PIN_NOT_INITIALIZED,
    UserTypeInvalid => CKR_USER_TYPE_INVALID,
    UserAnotherAlreadyLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    UserTooManyTypes => CKR_USER_TOO_MANY_TYPES,
    DataInvalid => CKR_DATA_INVALID,
    DataLenRange => CKR_DATA_LEN_RANGE,
    EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID,
    EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE,
    SignatureInvalid => CKR_SIGNATURE_INVALID,
    SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
    BufferTooSmall => CKR_BUFFER_TOO_SMALL,
    DeviceError => CKR_DEVICE_ERROR,
    DeviceMemory => CKR_DEVICE_MEMORY,
    RandomSeedNotSupported => CKR_RANDOM_SEED_NOT_SUPPORTED,
    RandomNoRng => CKR_RANDOM_NO_RNG,
    NoEvent => CKR_NO_EVENT,
    CurveNotSupported => CKR_CURVE_NOT_SUPPORTED,
    DomainParamsInvalid => CKR_DOMAIN_PARAMS_INVALID,
    WrappedKeyInvalid => CKR_WRAPPED_KEY_INVALID,
    WrappedKeyLenRange => CKR_WRAPPED_KEY_LEN_RANGE,
    WrappingKeyHandleInvalid => CKR_WRAPPING_KEY_HANDLE_INVALID,
    WrappingKeySizeRange => CKR_WRAPPING_KEY_SIZE_RANGE,
    WrappingKeyTypeInconsistent => CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
    UnwrappingKeyHandleInvalid => CKR_UNWRAPPING_KEY_HANDLE_INVALID,
    UnwrappingKeySizeRange => CKR_UNWRAPPING_KEY_SIZE_RANGE,
    UnwrappingKeyTypeInconsistent => CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
    StateUnsaveable => CKR_STATE_UNSAVEABLE,
    SavedStateInvalid => CKR_SAVED_STATE_INVALID,
    InformationSensitive => CKR_INFORMATION_SENSITIVE,
    FunctionCanceled => CKR_FUNCTION_CANCELED,
    OperationCancelFailed => CKR_OPERATION_CANCEL_FAILED,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

/// Result of a module operation.
pub type Result<T> = std::result::Result<T, Error>;

/// The `CKR_*` name of any return value, for logs (`CKR_OK` included).
pub fn rv_name(rv: CK_RV) -> String {
    if rv == CKR_OK {
        return "CKR_OK".into();
    }
    Error::ALL
        .iter()
        .find(|e| e.rv() == rv)
        .map_or_else(|| format!("CKR_{rv:#x}"), |e| e.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_one_to_one_and_never_ok() {
        let mut seen = std::collections::HashSet::new();
        for e in Error::ALL {
            assert_ne!(e.rv(), CKR_OK, "{e} maps to CKR_OK");
            assert!(
                seen.insert(e.rv()),
                "{e} shares its CK_RV with another variant"
            );
        }
    }

    #[test]
    fn names_match_values() {
        assert_eq!(Error::PinIncorrect.rv(), CKR_PIN_INCORRECT);
        assert_eq!(Error::PinIncorrect.name(), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(CKR_BUFFER_TOO_SMALL), "CKR_BUFFER_TOO_SMALL");
        assert_eq!(rv_name(CKR_OK), "CKR_OK");
    }
}
