//! The contract of `HealthCheck`.

use super::*;

pub async fn health_check_answers(store: impl Store) {
    store.check().await.unwrap();
}
