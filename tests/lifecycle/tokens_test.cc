// Tokens: random text shown once, only its SHA-256 stored, revocation honoured.

#include "btstore/tokens.h"

#include <gtest/gtest.h>

#include <regex>

#include "btstore/errors.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    catalog_ = Catalog::Open("sqlite:" + (dir_.path() / "catalog.db").string());
    catalog_->Migrate();
  }
  TempDir dir_;
  std::unique_ptr<Catalog> catalog_;
  SystemClock clock_;
};

TEST(Tokens, HashIsTheSha256OfTheText) {
  EXPECT_EQ(HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(TokensTest, CreateStoresOnlyTheHashAndAuthenticateFindsIt) {
  IssuedToken issued = CreateToken(*catalog_, clock_, "alice", Role::kSubmitter);
  EXPECT_TRUE(std::regex_match(issued.token, std::regex("bts_[0-9a-f]{64}")));
  EXPECT_EQ(issued.record.token_hash, HashToken(issued.token));
  std::vector<TokenRecord> stored = catalog_->ListTokens();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].token_hash, HashToken(issued.token));
  EXPECT_NE(stored[0].token_hash, issued.token);

  std::optional<TokenRecord> who = Authenticate(*catalog_, issued.token);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->user, "alice");
  EXPECT_EQ(who->role, Role::kSubmitter);
  EXPECT_FALSE(Authenticate(*catalog_, issued.token + "0").has_value());
  EXPECT_FALSE(Authenticate(*catalog_, "").has_value());
}

TEST_F(TokensTest, TwoTokensDifferAndARevokedOneAuthenticatesNoOne) {
  IssuedToken a = CreateToken(*catalog_, clock_, "bob", Role::kReader);
  IssuedToken b = CreateToken(*catalog_, clock_, "bob", Role::kReader);
  EXPECT_NE(a.token, b.token);
  EXPECT_NE(a.record.token_id, b.record.token_id);
  ASSERT_TRUE(catalog_->RevokeToken(a.record.token_id, clock_.Now()));
  EXPECT_FALSE(Authenticate(*catalog_, a.token).has_value());
  EXPECT_TRUE(Authenticate(*catalog_, b.token).has_value());
}

TEST_F(TokensTest, CreateRefusesABadUser) {
  EXPECT_THROW(CreateToken(*catalog_, clock_, "", Role::kAdmin), InvalidArgument);
  EXPECT_THROW(CreateToken(*catalog_, clock_, "a\nb", Role::kAdmin), InvalidArgument);
  EXPECT_TRUE(catalog_->ListTokens().empty());
}

TEST(Roles, ParseAndPrint) {
  for (Role role : {Role::kReader, Role::kSubmitter, Role::kAdmin}) {
    EXPECT_EQ(ParseRole(ToString(role)), role);
  }
  EXPECT_THROW(ParseRole("root"), InvalidArgument);
}

}  // namespace
}  // namespace btstore::testing
