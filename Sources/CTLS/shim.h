#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

// Macros of OpenSSL's API that Swift cannot call, as functions.
static inline long gunn_ssl_set_sni(SSL *s, const char *name) { return SSL_set_tlsext_host_name(s, name); }
static inline long gunn_ssl_ctx_min_tls12(SSL_CTX *c) { return SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION); }
static inline void gunn_ssl_ctx_ignore_unexpected_eof(SSL_CTX *c) {
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
}
// A server context for non-blocking sockets: partial writes allowed, and a retried write may come
// from a moved buffer (the outbound queue compacts); the buffers OpenSSL holds are released when idle.
static inline void gunn_ssl_ctx_server_modes(SSL_CTX *c) {
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}
