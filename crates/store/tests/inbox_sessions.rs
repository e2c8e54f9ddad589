//! The web inbox's logins in the store, on both backends: a login link works once and only
//! for an active token; a session is found by its cookie until it expires, is ended, or its
//! token is revoked; only hashes are stored.

use pdchannels_testkit::on_both_backends;
use secrecy::ExposeSecret;

on_both_backends! {
    async fn a_login_link_works_once_and_only_for_an_active_token(db) {
        let store = db.open().await;
        let token = store.create_token("ada").await.unwrap();
        assert!(store.create_login_link("tok_nope").await.unwrap().is_none());
        let link = store.create_login_link(&token.info.id).await.unwrap().unwrap();
        let link = link.expose_secret().to_owned();
        assert!(store.use_login_link("pdl_wrong").await.unwrap().is_none());
        assert_eq!(store.use_login_link(&link).await.unwrap().as_deref(), Some(token.info.id.as_str()));
        assert!(store.use_login_link(&link).await.unwrap().is_none(), "used once");

        let other = store.create_login_link(&token.info.id).await.unwrap().unwrap();
        assert!(store.revoke_token(&token.info.id).await.unwrap());
        assert!(store.use_login_link(other.expose_secret()).await.unwrap().is_none(), "its token was revoked");
        store.close().await;
    }

    async fn a_session_lasts_until_it_expires_ends_or_its_token_is_revoked(db) {
        let store = db.open().await;
        let token = store.create_token("ada").await.unwrap();
        let session = store.open_inbox_session(&token.info.id, 60_000).await.unwrap();
        assert!(!format!("{session:?}").contains(session.secret.expose_secret()));
        let found = store.inbox_session(session.secret.expose_secret()).await.unwrap().unwrap();
        assert_eq!(found.token_id, token.info.id);
        assert_eq!(found.csrf, session.csrf);
        assert!(store.inbox_session("pds_other").await.unwrap().is_none());

        let expired = store.open_inbox_session(&token.info.id, -1).await.unwrap();
        assert!(store.inbox_session(expired.secret.expose_secret()).await.unwrap().is_none());

        store.end_inbox_session(session.secret.expose_secret()).await.unwrap();
        assert!(store.inbox_session(session.secret.expose_secret()).await.unwrap().is_none());

        let again = store.open_inbox_session(&token.info.id, 60_000).await.unwrap();
        store.revoke_token(&token.info.id).await.unwrap();
        assert!(store.inbox_session(again.secret.expose_secret()).await.unwrap().is_none());
        store.close().await;
    }
}
