// Bearer tokens: random text shown once, its SHA-256 kept in the catalog.

#include "btstore/tokens.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>

#include "btstore/errors.h"

namespace btstore {
namespace {

constexpr size_t kTokenBytes = 32;  // 256 bits: guessing is hopeless, a hash lookup suffices
constexpr size_t kTokenIdBytes = 8;

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 0x0f]);
  }
  return hex;
}

std::string RandomHex(size_t bytes) {
  std::array<unsigned char, kTokenBytes> buffer{};
  if (bytes > buffer.size() || RAND_bytes(buffer.data(), static_cast<int>(bytes)) != 1) {
    throw InternalError("no random bytes for a token from the OS");
  }
  return Hex(buffer.data(), bytes);
}

}  // namespace

std::string HashToken(std::string_view token) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return Hex(digest.data(), digest.size());
}

IssuedToken CreateToken(Catalog& catalog, Clock& clock, std::string_view user, Role role) {
  ValidateUserName(user);
  IssuedToken issued;
  issued.token = "bts_" + RandomHex(kTokenBytes);
  issued.record.token_id = "tok-" + RandomHex(kTokenIdBytes);
  issued.record.user = std::string(user);
  issued.record.role = role;
  issued.record.token_hash = HashToken(issued.token);
  issued.record.created_at = clock.Now();
  catalog.InsertToken(issued.record);
  return issued;
}

std::optional<TokenRecord> Authenticate(Catalog& catalog, std::string_view token) {
  std::optional<TokenRecord> found = catalog.FindTokenByHash(HashToken(token));
  if (!found || found->revoked_at) return std::nullopt;
  return found;
}

}  // namespace btstore
