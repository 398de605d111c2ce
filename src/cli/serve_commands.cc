// `btstore serve` (the HTTP API and the page) and `btstore token create|list|revoke` (its
// bearer tokens).

#include <charconv>
#include <iostream>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "btstore/tokens.h"
#include "btstore/wire.h"
#include "cli/cli.h"
#include "http/server.h"

namespace btstore::cli {
namespace {

// Split "HOST:PORT" ("[::1]:8080" for IPv6). Throws InvalidArgument.
std::pair<std::string, int> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    throw InvalidArgument("--listen must be HOST:PORT, got '" + listen + "'",
                          {{"flag", "--listen"}, {"value", listen}});
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  const std::string text = listen.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || ptr != text.data() + text.size() || port < 0 || port > 65535) {
    throw InvalidArgument("--listen has a bad port '" + text + "'",
                          {{"flag", "--listen"}, {"value", listen}});
  }
  return {host, port};
}

struct ServeFlags {
  std::string listen = "127.0.0.1:8080";
  std::string auth = "token";
  int threads = http::ServerOptions{}.threads;
  int64_t keep_alive_seconds = http::ServerOptions{}.keep_alive_timeout.count();
  int64_t max_body_mb = static_cast<int64_t>(http::ServerOptions{}.max_body_bytes >> 20);
};

void AddServe(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the HTTP API and the page");
  cmd->add_option("--listen", flags->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--auth", flags->auth,
                  "token: every API request needs 'Authorization: Bearer TOKEN'; none: no "
                  "credentials, everyone is an admin (loopback addresses only)")
      ->check(CLI::IsMember({"token", "none"}))
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads,
                  "connections served at once, idle kept-alive ones included (a thread each)")
      ->capture_default_str();
  cmd->add_option("--keep-alive-seconds", flags->keep_alive_seconds,
                  "an idle kept-alive connection is closed after this long")
      ->capture_default_str();
  cmd->add_option("--max-body-mb", flags->max_body_mb, "largest request body (an upload), MiB")
      ->capture_default_str();
  SetExamples(cmd,
              "  btstore token create --user alice --role submitter   # prints the token once\n"
              "  btstore serve --listen 127.0.0.1:8080\n"
              "  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/v1/jobs\n"
              "Prints {\"listening\": \"http://HOST:PORT\"} on stdout once it accepts "
              "connections;\none JSON line per request on stderr. SIGTERM or SIGINT stops it: "
              "requests in flight\nfinish, new ones are refused.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      http::ServerOptions options;
      std::tie(options.host, options.port) = ParseListen(flags->listen);
      options.require_tokens = flags->auth == "token";
      options.threads = flags->threads;
      if (flags->keep_alive_seconds < 1 || flags->keep_alive_seconds > 3600) {
        throw InvalidArgument("--keep-alive-seconds must be 1..3600");
      }
      options.keep_alive_timeout = std::chrono::seconds(flags->keep_alive_seconds);
      if (flags->max_body_mb < 1 || flags->max_body_mb > (int64_t{1} << 20)) {
        throw InvalidArgument("--max-body-mb must be 1..1048576");
      }
      options.max_body_bytes = static_cast<size_t>(flags->max_body_mb) << 20;
      options.access_log = &std::cerr;
      std::unique_ptr<Service> service = ctx.OpenService();
      service->store().Prepare();  // before listening: the first request does not pay for it
      std::unique_ptr<http::Server> server = http::Server::Make(*service, options);
      const std::string host =
          options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
      PrintJson({{"listening", "http://" + host + ":" + std::to_string(server->port())},
                 {"auth", flags->auth}});
      std::cout << std::flush;
      http::RunUntilSignalled(*server);
      return 0;
    };
  });
}

nlohmann::json TokenJson(const TokenRecord& token) {
  return {{"token_id", token.token_id},
          {"user", token.user},
          {"role", ToString(token.role)},
          {"created_at", FormatTimestamp(token.created_at)},
          {"revoked_at", token.revoked_at ? nlohmann::json(FormatTimestamp(*token.revoked_at))
                                          : nlohmann::json(nullptr)}};
}

struct TokenFlags {
  std::string user, role = "reader", token_id;
};

void AddToken(CLI::App& app, Action& action) {
  auto flags = std::make_shared<TokenFlags>();
  CLI::App* token = app.add_subcommand("token", "Manage the HTTP API's bearer tokens");
  token->require_subcommand(1);

  CLI::App* create = token->add_subcommand("create", "Create a token and print it once");
  create->add_option("--user", flags->user, "the user the token acts as")->required();
  create->add_option("--role", flags->role, "reader, submitter or admin")
      ->check(CLI::IsMember({"reader", "submitter", "admin"}))
      ->capture_default_str();
  SetExamples(create,
              "  btstore token create --user alice --role submitter\n"
              "The token is shown only now; the catalog keeps only its SHA-256.\n");
  create->callback([&action, flags] {
    action = [flags](Context& ctx) {
      std::unique_ptr<Service> service = ctx.OpenService();
      IssuedToken issued =
          CreateToken(service->catalog(), service->clock(), flags->user, ParseRole(flags->role));
      if (ctx.json) {
        nlohmann::json doc = TokenJson(issued.record);
        doc["token"] = issued.token;
        PrintJson(doc);
      } else {
        std::cout << issued.token << "\n";
        std::cerr << "token " << issued.record.token_id << " for " << Printable(flags->user) << " ("
                  << flags->role << "); it is shown only now: keep it where a password would go\n";
      }
      return 0;
    };
  });

  CLI::App* list = token->add_subcommand("list", "List tokens (never their text)");
  list->callback([&action] {
    action = [](Context& ctx) {
      std::unique_ptr<Service> service = ctx.OpenService();
      std::vector<TokenRecord> tokens = service->catalog().ListTokens();
      if (ctx.json) {
        nlohmann::json doc = nlohmann::json::array();
        for (const TokenRecord& t : tokens) doc.push_back(TokenJson(t));
        PrintJson({{"tokens", doc}});
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const TokenRecord& t : tokens) {
        rows.push_back({t.token_id, t.user, std::string(ToString(t.role)), HumanTime(t.created_at),
                        t.revoked_at ? HumanTime(*t.revoked_at) : "-"});
      }
      PrintTable(std::cout, {"TOKEN_ID", "USER", "ROLE", "CREATED", "REVOKED"}, rows);
      return 0;
    };
  });

  CLI::App* revoke = token->add_subcommand("revoke", "Revoke a token by its id");
  revoke->add_option("TOKEN_ID", flags->token_id, "as `token list` shows it")->required();
  revoke->callback([&action, flags] {
    action = [flags](Context& ctx) {
      std::unique_ptr<Service> service = ctx.OpenService();
      if (!service->catalog().RevokeToken(flags->token_id, service->clock().Now())) {
        throw InvalidArgument("no token " + flags->token_id + " (see `btstore token list`)",
                              {{"token_id", flags->token_id}});
      }
      if (ctx.json) {
        PrintJson({{"token_id", flags->token_id}, {"revoked", true}});
      } else {
        std::cout << "revoked " << flags->token_id << "\n";
      }
      return 0;
    };
  });
}

}  // namespace

void RegisterServeCommands(CLI::App& app, Action& action) {
  AddServe(app, action);
  AddToken(app, action);
}

}  // namespace btstore::cli
