//! NOTIFICATION message (RFC 4271 §4.5, §6) with the names of every code
//! and subcode registered by RFC 4271, RFC 4486, RFC 7313, RFC 8203 and RFC 9003.

/// Error codes.
pub const MESSAGE_HEADER_ERROR: u8 = 1;
pub const OPEN_MESSAGE_ERROR: u8 = 2;
pub const UPDATE_MESSAGE_ERROR: u8 = 3;
pub const HOLD_TIMER_EXPIRED: u8 = 4;
pub const FSM_ERROR: u8 = 5;
pub const CEASE: u8 = 6;
pub const ROUTE_REFRESH_ERROR: u8 = 7;

/// OPEN message error subcodes.
pub mod open {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE message error subcodes.
pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Cease subcodes (RFC 4486, RFC 8203, RFC 8538).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
    pub const BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION: code, subcode and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease with an RFC 8203 shutdown communication.
    pub fn cease(subcode: u8, reason: &str) -> Self {
        let mut data = Vec::new();
        if matches!(subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET) && !reason.is_empty() {
            let r = &reason.as_bytes()[..reason.len().min(255)];
            data.push(r.len() as u8);
            data.extend_from_slice(r);
        }
        Notification::new(CEASE, subcode, data)
    }

    pub fn code_name(&self) -> &'static str {
        match self.code {
            MESSAGE_HEADER_ERROR => "Message Header Error",
            OPEN_MESSAGE_ERROR => "OPEN Message Error",
            UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
            HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            FSM_ERROR => "Finite State Machine Error",
            CEASE => "Cease",
            ROUTE_REFRESH_ERROR => "ROUTE-REFRESH Message Error",
            _ => "Unknown error code",
        }
    }

    pub fn subcode_name(&self) -> &'static str {
        match (self.code, self.subcode) {
            (MESSAGE_HEADER_ERROR, 1) => "Connection Not Synchronized",
            (MESSAGE_HEADER_ERROR, 2) => "Bad Message Length",
            (MESSAGE_HEADER_ERROR, 3) => "Bad Message Type",
            (OPEN_MESSAGE_ERROR, 1) => "Unsupported Version Number",
            (OPEN_MESSAGE_ERROR, 2) => "Bad Peer AS",
            (OPEN_MESSAGE_ERROR, 3) => "Bad BGP Identifier",
            (OPEN_MESSAGE_ERROR, 4) => "Unsupported Optional Parameter",
            (OPEN_MESSAGE_ERROR, 5) => "Authentication Failure (deprecated)",
            (OPEN_MESSAGE_ERROR, 6) => "Unacceptable Hold Time",
            (OPEN_MESSAGE_ERROR, 7) => "Unsupported Capability",
            (OPEN_MESSAGE_ERROR, 11) => "Role Mismatch",
            (UPDATE_MESSAGE_ERROR, 1) => "Malformed Attribute List",
            (UPDATE_MESSAGE_ERROR, 2) => "Unrecognized Well-known Attribute",
            (UPDATE_MESSAGE_ERROR, 3) => "Missing Well-known Attribute",
            (UPDATE_MESSAGE_ERROR, 4) => "Attribute Flags Error",
            (UPDATE_MESSAGE_ERROR, 5) => "Attribute Length Error",
            (UPDATE_MESSAGE_ERROR, 6) => "Invalid ORIGIN Attribute",
            (UPDATE_MESSAGE_ERROR, 7) => "AS Routing Loop (deprecated)",
            (UPDATE_MESSAGE_ERROR, 8) => "Invalid NEXT_HOP Attribute",
            (UPDATE_MESSAGE_ERROR, 9) => "Optional Attribute Error",
            (UPDATE_MESSAGE_ERROR, 10) => "Invalid Network Field",
            (UPDATE_MESSAGE_ERROR, 11) => "Malformed AS_PATH",
            (HOLD_TIMER_EXPIRED, _) => "",
            (FSM_ERROR, 0) => "Unspecified Error",
            (FSM_ERROR, 1) => "Unexpected Message in OpenSent State",
            (FSM_ERROR, 2) => "Unexpected Message in OpenConfirm State",
            (FSM_ERROR, 3) => "Unexpected Message in Established State",
            (CEASE, 1) => "Maximum Number of Prefixes Reached",
            (CEASE, 2) => "Administrative Shutdown",
            (CEASE, 3) => "Peer De-configured",
            (CEASE, 4) => "Administrative Reset",
            (CEASE, 5) => "Connection Rejected",
            (CEASE, 6) => "Other Configuration Change",
            (CEASE, 7) => "Connection Collision Resolution",
            (CEASE, 8) => "Out of Resources",
            (CEASE, 9) => "Hard Reset",
            (CEASE, 10) => "BFD Down",
            (ROUTE_REFRESH_ERROR, 1) => "Invalid Message Length",
            (_, 0) => "Unspecific",
            _ => "Unknown subcode",
        }
    }

    /// RFC 8203 shutdown communication, when the data carries one.
    pub fn shutdown_reason(&self) -> Option<String> {
        if self.code != CEASE || !matches!(self.subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET)
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..len as usize)?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code_name())?;
        let sub = self.subcode_name();
        if !sub.is_empty() {
            write!(f, "/{sub}")?;
        }
        write!(f, " ({}/{})", self.code, self.subcode)?;
        if let Some(r) = self.shutdown_reason() {
            write!(f, ": \"{r}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = Notification::new(OPEN_MESSAGE_ERROR, open::BAD_PEER_AS, vec![]);
        assert_eq!(n.to_string(), "OPEN Message Error/Bad Peer AS (2/2)");
        let n = Notification::cease(cease::ADMIN_SHUTDOWN, "maintenance");
        assert_eq!(n.shutdown_reason().as_deref(), Some("maintenance"));
        assert!(n.to_string().contains("maintenance"));
        let n = Notification::new(CEASE, cease::MAX_PREFIXES, vec![]);
        assert_eq!(n.subcode_name(), "Maximum Number of Prefixes Reached");
    }
}
