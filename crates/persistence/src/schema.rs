//! Diesel's view of the tables; kept by hand in step with `migrations/`.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        full_name -> Text,
        password_hash -> Text,
        email_verified -> Bool,
        is_active -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        tokens_valid_after -> BigInt,
    }
}

diesel::table! {
    otp_codes (id) {
        id -> Text,
        email -> Text,
        purpose -> Text,
        code_hash -> Binary,
        attempts -> Integer,
        consumed_at -> Nullable<BigInt>,
        created_at -> BigInt,
        expires_at -> BigInt,
        full_name -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        user_id -> Nullable<Text>,
    }
}

diesel::table! {
    rate_limits (bucket) {
        bucket -> Text,
        window_start -> BigInt,
        count -> Integer,
        last_at -> BigInt,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        recipient -> Text,
        kind -> Text,
        payload -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        otp_id -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> BigInt,
        kind -> Text,
        user_id -> Nullable<Text>,
        email -> Nullable<Text>,
        client -> Nullable<Text>,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (family_id) {
        family_id -> Text,
        user_id -> Text,
        created_at -> BigInt,
        created_client -> Nullable<Text>,
        created_user_agent -> Nullable<Text>,
        last_used_at -> BigInt,
        last_client -> Nullable<Text>,
        last_user_agent -> Nullable<Text>,
        token_hash -> Nullable<Binary>,
        expires_at -> BigInt,
        family_expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

// The same table as `sessions`, as a rotation sees it: Diesel declares at most 16
// columns per table without a feature that slows every build of it.
diesel::table! {
    #[sql_name = "sessions"]
    session_tokens (family_id) {
        family_id -> Text,
        user_id -> Text,
        token_hash -> Nullable<Binary>,
        expires_at -> BigInt,
        family_expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        previous_hash -> Nullable<Binary>,
        previous_spent_at -> Nullable<BigInt>,
        access_jti -> Nullable<Text>,
        refresh_jti -> Nullable<Text>,
        issued_at -> Nullable<BigInt>,
        last_used_at -> BigInt,
        last_client -> Nullable<Text>,
        last_user_agent -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    sessions,
    users,
    otp_codes,
    rate_limits,
    outbox
);

diesel::allow_tables_to_appear_in_same_query!(session_tokens, users);
