-- The whole schema at once (MariaDB came after the other backends' migrations), in the
-- shape of the other backends' latest. Times are Unix milliseconds (UTC), as on
-- SQLite and PostgreSQL, so all share one Diesel schema.
--
-- utf8mb4_bin: text compares byte for byte, as on the other backends (MariaDB's default
-- collations ignore case, which would make Ada@ and ada@ one address and one bucket).
-- Indexed text is VARCHAR (InnoDB cannot index TEXT whole): ids are UUIDs, addresses at
-- most 254 characters, limit keys an address with a purpose or a client.
CREATE TABLE users (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    full_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tokens_valid_after BIGINT NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Each registration keeps its own code, carrying the name and password (hash) that
-- entering it puts into effect: several codes per address and purpose.
CREATE TABLE otp_codes (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    email VARCHAR(320) NOT NULL,
    purpose VARCHAR(64) NOT NULL,
    code_hash VARBINARY(64) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    consumed_at BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    full_name TEXT,
    password_hash TEXT,
    user_id VARCHAR(36),
    INDEX otp_codes_address (email, purpose),
    INDEX otp_codes_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Shared rate limits: one row per bucket.
CREATE TABLE rate_limits (
    bucket VARCHAR(700) NOT NULL PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count INTEGER NOT NULL,
    last_at BIGINT NOT NULL,
    INDEX rate_limits_last_at (last_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Mail waiting for delivery, written in the same transaction as the change that
-- caused it; `payload` (sealed, may hold a code) is erased once the message ends.
CREATE TABLE outbox (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    recipient VARCHAR(320) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    payload MEDIUMTEXT,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    expires_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    otp_id VARCHAR(36),
    INDEX outbox_due (status, next_attempt_at),
    INDEX outbox_otp (otp_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Refresh tokens by SHA-256 of the token, in families (sessions).
CREATE TABLE refresh_tokens (
    token_hash VARBINARY(64) NOT NULL PRIMARY KEY,
    family_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT,
    revoked_at BIGINT,
    successor_access_jti TEXT,
    successor_refresh_jti TEXT,
    successor_issued_at BIGINT,
    created_at BIGINT NOT NULL,
    family_expires_at BIGINT,
    INDEX refresh_tokens_family (family_id),
    INDEX refresh_tokens_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Security events, each written in the transaction of the change it describes.
CREATE TABLE audit_events (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind VARCHAR(64) NOT NULL,
    user_id VARCHAR(36),
    email VARCHAR(320),
    client TEXT,
    request_id TEXT,
    INDEX audit_events_at (at),
    INDEX audit_events_email (email, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per session (refresh-token family): its origin and its last use.
CREATE TABLE sessions (
    family_id VARCHAR(36) NOT NULL PRIMARY KEY,
    user_id VARCHAR(36) NOT NULL,
    created_at BIGINT NOT NULL,
    created_client TEXT,
    created_user_agent TEXT,
    last_used_at BIGINT NOT NULL,
    last_client TEXT,
    last_user_agent TEXT,
    INDEX sessions_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
