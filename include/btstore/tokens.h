#pragma once
/// Bearer tokens of the HTTP API (contract section 9): created for a user and a role, shown once,
/// kept in the catalog only as a SHA-256 hash, checked on every request, revoked by id.

#include <optional>
#include <string>
#include <string_view>

#include "btstore/catalog.h"
#include "btstore/lifecycle.h"
#include "btstore/model.h"

namespace btstore {

/// A token just created: the text to hand to its holder (never stored) and what the catalog keeps.
struct IssuedToken {
  std::string token;  ///< "bts_" + 64 hex digits from the OS's random source
  TokenRecord record;
};

/// Return the lowercase hex SHA-256 of a token's text (what the catalog stores).
std::string HashToken(std::string_view token);

/// Create a token for `user` with `role` and store its hash. Throws InvalidArgument (an empty
/// user, or one with control characters or longer than 255 bytes), InternalError (no random
/// source), CatalogUnavailable.
IssuedToken CreateToken(Catalog& catalog, Clock& clock, std::string_view user, Role role);

/// Return the token record of `token` when it is stored and not revoked, else nullopt. Throws
/// CatalogUnavailable.
std::optional<TokenRecord> Authenticate(Catalog& catalog, std::string_view token);

}  // namespace btstore
