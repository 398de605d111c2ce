// The HTTP server: limits, tokens and roles, the JSON API over the Service, live progress,
// monitoring, access logs and graceful shutdown. Every handler runs inside Handle(), the one
// place where an exception becomes the contract's error envelope and HTTP status.

#include "http/server.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "btstore/tokens.h"
#include "btstore/wire.h"
#include "http/assets_internal.h"
#include "http/connections_internal.h"
#include "http/server_internal.h"

namespace btstore::http {

using internal::Caller;
using wire::Json;
namespace fs = std::filesystem;

namespace {

// A bearer token is "bts_" and 64 hex digits; anything much longer is refused unread.
constexpr size_t kMaxTokenLength = 256;
// An uploaded bundle holds at most this many files.
constexpr size_t kMaxUploadFiles = 64;
// The stack of a connection's thread: a thousand of them cost a little memory. Handlers are
// shallow (the deepest: SQLite, JSON and Arrow's writers); table decoding has threads of its own.
constexpr size_t kThreadStackBytes = 1 << 20;
// The jobs one comparison request may overlay.
constexpr int kMaxCompareJobs = 20;
// Latency histogram buckets of /metrics, in seconds.
constexpr std::array<double, 12> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

using Clock = std::chrono::steady_clock;

// What the access log and /metrics learn about the request the current thread serves: the
// handler sets the route and the user; the logger (same thread, after the response) reads them.
struct RequestState {
  Clock::time_point start;
  std::string route;
  std::string user;
  std::string error;  // what an internal error said, for the operator's log only
};
thread_local RequestState t_request;

int Rank(Role role) { return static_cast<int>(role); }

std::string RoleList(Role minimum) {
  switch (minimum) {
    case Role::kReader:
      return "reader, submitter or admin";
    case Role::kSubmitter:
      return "submitter or admin";
    case Role::kAdmin:
      return "admin";
  }
  return "";
}

// Request counts and latency histograms by route, for /metrics.
class RequestMetrics {
 public:
  void Record(const std::string& route, const std::string& method, int status, double seconds) {
    std::lock_guard lock(mutex_);
    Series& series = series_[{route, method}];
    series.count_by_status[status]++;
    series.sum += seconds;
    series.total++;
    for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
      if (seconds <= kLatencyBuckets[i]) series.buckets[i]++;
    }
  }

  void Write(std::ostream& out) const {
    std::lock_guard lock(mutex_);
    out << "# HELP btstore_http_requests_total HTTP requests served, by route and status.\n"
           "# TYPE btstore_http_requests_total counter\n";
    for (const auto& [key, series] : series_) {
      for (const auto& [status, count] : series.count_by_status) {
        out << "btstore_http_requests_total{route=\"" << key.first << "\",method=\"" << key.second
            << "\",status=\"" << status << "\"} " << count << "\n";
      }
    }
    out << "# HELP btstore_http_request_duration_seconds Time to answer a request, by route.\n"
           "# TYPE btstore_http_request_duration_seconds histogram\n";
    for (const auto& [key, series] : series_) {
      const std::string labels = "route=\"" + key.first + "\",method=\"" + key.second + "\"";
      for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        out << "btstore_http_request_duration_seconds_bucket{" << labels << ",le=\""
            << kLatencyBuckets[i] << "\"} " << series.buckets[i] << "\n";
      }
      out << "btstore_http_request_duration_seconds_bucket{" << labels << ",le=\"+Inf\"} "
          << series.total << "\n";
      out << "btstore_http_request_duration_seconds_sum{" << labels << "} " << series.sum << "\n";
      out << "btstore_http_request_duration_seconds_count{" << labels << "} " << series.total
          << "\n";
    }
  }

 private:
  struct Series {
    std::map<int, int64_t> count_by_status;
    std::array<int64_t, kLatencyBuckets.size()> buckets{};
    double sum = 0;
    int64_t total = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, Series> series_;
};

// The outcome of the last cleanup and verify run through the API, for /metrics.
struct MaintenanceGauges {
  std::mutex mutex;
  std::optional<int64_t> cleanup_removed;
  std::optional<double> cleanup_at;
  std::optional<int64_t> verify_checked;
  std::optional<int64_t> verify_problems;
  std::optional<double> verify_at;
};

double UnixSeconds(Timestamp ts) {
  return std::chrono::duration<double>(ts.time_since_epoch()).count();
}

// Query parameters as fields; a repeated parameter is refused rather than half-used.
std::map<std::string, std::string> QueryFields(const httplib::Request& req,
                                               const std::set<std::string>& ignore = {}) {
  std::map<std::string, std::string> fields;
  for (const auto& [key, value] : req.params) {
    if (ignore.contains(key)) continue;
    if (!fields.emplace(key, value).second) {
      throw InvalidArgument("parameter " + key + " is given more than once", {{"field", key}});
    }
  }
  return fields;
}

std::string ApiName(std::string_view field) { return std::string(field); }

// Parse a request body that must be a JSON object (an empty body is an empty object).
Json BodyObject(const httplib::Request& req) {
  if (req.body.empty()) return Json::object();
  Json body = wire::ParseLenientJson(req.body, "request body");
  if (!body.is_object()) throw InvalidArgument("request body must be a JSON object");
  return body;
}

// Refuse keys a route does not know, so a typo is an error instead of a silent default.
void OnlyKeys(const Json& body, const std::set<std::string>& known) {
  for (const auto& [key, value] : body.items()) {
    if (!known.contains(key)) {
      throw InvalidArgument("unknown field '" + key + "' in the request body", {{"field", key}});
    }
  }
}

std::string StringField(const Json& body, const std::string& key, const std::string& fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_string()) {
    throw InvalidArgument(key + " must be a string", {{"field", key}});
  }
  return body[key].get<std::string>();
}

int IntField(const Json& body, const std::string& key, int fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number_integer()) {
    throw InvalidArgument(key + " must be an integer", {{"field", key}});
  }
  const int64_t value = body[key].get<int64_t>();
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    throw InvalidArgument(key + " is out of range", {{"field", key}});
  }
  return static_cast<int>(value);
}

bool BoolField(const Json& body, const std::string& key, bool fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_boolean()) throw InvalidArgument(key + " must be true or false");
  return body[key].get<bool>();
}

// The config of a submission: a JSON object, or its text.
std::string ConfigField(const Json& body) {
  if (!body.contains("config") || body["config"].is_null()) return JobSpec{}.config_json;
  if (body["config"].is_string()) {
    return wire::ParseConfigText(body["config"].get<std::string>(), "config");
  }
  if (!body["config"].is_object()) throw InvalidArgument("config must be a JSON object");
  return wire::ParseConfigText(body["config"].dump(), "config");
}

// A bundle's file name from an upload: a plain name ending in .parquet or .json. Anything with
// a separator, a leading dot or other characters is refused, so no upload names a path.
void CheckUploadName(const std::string& name) {
  static const std::regex kName(R"([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
  const bool known_kind = name.ends_with(".parquet") || name.ends_with(".json");
  if (!std::regex_match(name, kName) || !known_kind) {
    throw InvalidArgument("uploaded file name '" + name +
                              "' is not a bundle file (NAME.parquet or NAME.json, letters, "
                              "digits, '_', '-', '.')",
                          {{"file", name}});
  }
}

// A table's name from a request: a plain file stem, so it can only name a file of the bundle.
void CheckTableName(const std::string& name) {
  static const std::regex kName(R"([A-Za-z0-9_][A-Za-z0-9_-]{0,127})");
  if (!std::regex_match(name, kName)) {
    throw InvalidArgument("table name '" + name +
                              "' is not a table of a bundle (letters, "
                              "digits, '_', '-')",
                          {{"table", name}});
  }
}

// A private temporary directory, removed with everything in it when the request ends.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "btstore-upload-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw InternalError("cannot make a temporary directory for an upload");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string JsonLine(const Json& doc) {
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

bool IsLoopback(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

class Server::Impl {
 public:
  Impl(Service& service, const ServerOptions& options) : service_(service), options_(options) {}

  void Setup();
  int Bind();
  void Run() { svr_.listen_after_bind(); }
  void Stop() {
    stopping_ = true;
    svr_.StopAccepting();
  }
  int port() const { return port_; }

 private:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&, const Caller&)>;

  // Register `handler` for `method` and `pattern` under the route name `route`; callers need
  // at least `minimum` (nullopt: no credentials needed).
  void Route(const std::string& method, const std::string& pattern, const std::string& route,
             std::optional<Role> minimum, Handler handler);
  Caller Authorize(const httplib::Request& req, std::optional<Role> minimum) const;
  // A submitter may move only its own jobs.
  void RequireOwner(const Caller& caller, const JobRecord& job, const std::string& what) const;
  void SendError(httplib::Response& res, const wire::Failure& failure) const;
  void SendJson(httplib::Response& res, const Json& doc, int status = 200) const;
  void Log(const httplib::Request& req, const httplib::Response& res);

  void AddJobRoutes();
  void AddTableRoutes();
  void AddAdminRoutes();
  void AddMonitoringRoutes();
  void AddPageRoutes();

  SubmitResult Submit(const Json& body, const Caller& caller);
  SubmitResult Import(const httplib::Request& req, const Caller& caller);
  void StreamEvents(const std::string& job_id, httplib::Response& res);
  std::string MetricsText();

  Service& service_;
  ServerOptions options_;
  internal::ConnectionServer svr_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  RequestMetrics request_metrics_;
  MaintenanceGauges gauges_;
  std::mutex log_mutex_;
};

// --- The frame every request goes through ---------------------------------------------------

void Server::Impl::SendJson(httplib::Response& res, const Json& doc, int status) const {
  res.status = status;
  res.set_content(JsonLine(doc), "application/json");
}

void Server::Impl::SendError(httplib::Response& res, const wire::Failure& failure) const {
  SendJson(res, wire::ErrorJson(failure), failure.http_status);
  if (failure.code == ErrorCode::kUnauthenticated) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"btstore\"");
  }
}

Caller Server::Impl::Authorize(const httplib::Request& req, std::optional<Role> minimum) const {
  if (!minimum) return {};
  if (!options_.require_tokens) return {"anonymous", Role::kAdmin};
  const std::string header = req.get_header_value("Authorization");
  constexpr std::string_view kScheme = "Bearer ";
  if (header.empty()) {
    throw Unauthenticated(
        "no credentials: send the header 'Authorization: Bearer TOKEN' (a "
        "token from `btstore token create`)");
  }
  // The scheme is case-insensitive (RFC 9110); the token is not.
  const bool bearer =
      header.size() > kScheme.size() &&
      std::equal(kScheme.begin(), kScheme.end(), header.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
      });
  if (!bearer || header.size() > kScheme.size() + kMaxTokenLength) {
    throw Unauthenticated("the Authorization header must be 'Bearer TOKEN'");
  }
  std::optional<TokenRecord> token =
      Authenticate(service_.catalog(), std::string_view(header).substr(kScheme.size()));
  if (!token) throw Unauthenticated("the token is unknown or revoked");
  t_request.user = token->user;
  if (Rank(token->role) < Rank(*minimum)) {
    throw PermissionDenied("this request needs the role " + RoleList(*minimum) + "; user '" +
                               token->user + "' has " + std::string(ToString(token->role)),
                           {{"user", token->user},
                            {"role", std::string(ToString(token->role))},
                            {"route", t_request.route}});
  }
  return {token->user, token->role};
}

void Server::Impl::RequireOwner(const Caller& caller, const JobRecord& job,
                                const std::string& what) const {
  if (caller.role == Role::kAdmin || job.created_by == caller.user) return;
  throw PermissionDenied(
      "a submitter may " + what + " only its own jobs; job " + job.job_id + " belongs to '" +
          job.created_by + "'",
      {{"user", caller.user}, {"job_id", job.job_id}, {"owner", job.created_by}});
}

void Server::Impl::Route(const std::string& method, const std::string& pattern,
                         const std::string& route, std::optional<Role> minimum, Handler handler) {
  auto wrapped = [this, route, minimum, handler](const httplib::Request& req,
                                                 httplib::Response& res) {
    t_request.route = route;
    try {
      const Caller caller = Authorize(req, minimum);
      handler(req, res, caller);
    } catch (const std::exception& e) {
      wire::Failure failure = wire::Classify(e);
      if (failure.code == ErrorCode::kInternal) {
        // A fault of the server, not of the request: its message may name paths, addresses or
        // library internals, which are the operator's business. They go to the access log; the
        // client learns only that it happened.
        t_request.error = failure.message;
        failure = wire::MakeFailure(
            ErrorCode::kInternal,
            "internal error: the server could not answer this request; its operator finds the "
            "cause in the server's log");
      }
      SendError(res, failure);
    }
  };
  if (method == "GET") {
    svr_.Get(pattern, wrapped);
  } else {
    svr_.Post(pattern, wrapped);
  }
}

void Server::Impl::Log(const httplib::Request& req, const httplib::Response& res) {
  // A request the library refused before routing (a malformed or oversized one) has no start.
  const Clock::time_point start =
      t_request.start == Clock::time_point{} ? Clock::now() : t_request.start;
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::string route = t_request.route.empty() ? "unmatched" : t_request.route;
  request_metrics_.Record(route, req.method, res.status, seconds);
  if (options_.access_log != nullptr) {
    // The path without its query: a query may hold filter values people consider private.
    Json line = {{"ts", FormatTimestamp(btstore::Now())},
                 {"remote", req.remote_addr},
                 {"method", req.method},
                 {"path", req.path},
                 {"route", route},
                 {"status", res.status},
                 {"ms", seconds * 1000.0},
                 {"user", t_request.user.empty() ? Json(nullptr) : Json(t_request.user)}};
    if (!t_request.error.empty()) line["error"] = t_request.error;
    // Encoded before the lock: the lock only orders whole lines.
    const std::string text = JsonLine(line) + "\n";
    std::lock_guard lock(log_mutex_);
    *options_.access_log << text << std::flush;
  }
  t_request = {};
}

void Server::Impl::Setup() {
  const int threads = options_.threads;
  svr_.new_task_queue = [threads] {
    return internal::NewConnectionPool(threads, kThreadStackBytes);
  };
  svr_.set_payload_max_length(options_.max_body_bytes);
  svr_.set_read_timeout(options_.read_timeout);
  svr_.set_write_timeout(options_.write_timeout);
  svr_.set_keep_alive_timeout(options_.keep_alive_timeout.count());
  svr_.set_keep_alive_max_count(1000);
  svr_.set_tcp_nodelay(true);
  svr_.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request = {Clock::now(), "", "", ""};
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr_.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) { Log(req, res); });
  // Answers the library makes itself (no route, a body over the limit, a malformed request)
  // get the envelope too; a handler's own error already has its body.
  svr_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                     httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = "request refused";
    if (res.status == 404) message = "no route " + req.method + " " + req.path;
    if (res.status == 413) {
      message = "request body larger than " + std::to_string(options_.max_body_bytes) + " bytes";
    }
    wire::Failure failure = wire::MakeFailure(ErrorCode::kInvalidArgument, message);
    failure.http_status = res.status;
    res.set_content(JsonLine(wire::ErrorJson(failure)), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  AddJobRoutes();
  AddTableRoutes();
  AddAdminRoutes();
  AddMonitoringRoutes();
  AddPageRoutes();
}

int Server::Impl::Bind() {
  if (options_.port == 0) {
    port_ = svr_.bind_to_any_port(options_.host);
  } else if (svr_.bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  } else {
    port_ = -1;
  }
  if (port_ <= 0) {
    throw InternalError("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                            " (in use, or not an address here)",
                        {{"host", options_.host}, {"port", std::to_string(options_.port)}});
  }
  svr_.SetAcceptQueue(SOMAXCONN);
  return port_;
}

// --- Jobs -------------------------------------------------------------------------------------

SubmitResult Server::Impl::Submit(const Json& body, const Caller& caller) {
  OnlyKeys(body, {"alpha", "start", "end", "weight_method", "config", "user", "priority", "job_id",
                  "job_timeout", "max_retries"});
  JobSpec spec;
  spec.job_id = StringField(body, "job_id", "");
  if (!spec.job_id.empty()) ValidateJobId(spec.job_id);
  spec.alpha_name = StringField(body, "alpha", "");
  spec.start_date = Date::Parse(StringField(body, "start", ""), "start");
  spec.end_date = Date::Parse(StringField(body, "end", ""), "end");
  spec.weight_method = StringField(body, "weight_method", spec.weight_method);
  spec.config_json = ConfigField(body);
  spec.priority = ParsePriority(StringField(body, "priority", "normal"));
  spec.job_timeout_seconds = IntField(body, "job_timeout", spec.job_timeout_seconds);
  spec.max_retries = IntField(body, "max_retries", spec.max_retries);
  // A token submits as its user; only an admin (or an open server) may name another.
  spec.created_by = StringField(body, "user", caller.user);
  if (caller.role != Role::kAdmin && spec.created_by != caller.user) {
    throw PermissionDenied(
        "a submitter submits as itself ('" + caller.user + "'), not as '" + spec.created_by + "'",
        {{"user", caller.user}});
  }
  return service_.jobs().Submit(std::move(spec));
}

SubmitResult Server::Impl::Import(const httplib::Request& req, const Caller& caller) {
  if (!req.is_multipart_form_data()) {
    throw InvalidArgument(
        "an import is a multipart/form-data upload: the bundle's files (field 'file', with "
        "their file names) and the fields alpha, start, end [weight_method, config, user, "
        "job_id]");
  }
  Json fields = Json::object();
  std::vector<const httplib::MultipartFormData*> files;
  for (const auto& [name, part] : req.files) {
    if (!part.filename.empty()) {
      files.push_back(&part);
    } else if (fields.contains(name)) {
      throw InvalidArgument("field " + name + " is given more than once", {{"field", name}});
    } else {
      fields[name] = part.content;
    }
  }
  OnlyKeys(fields, {"alpha", "start", "end", "weight_method", "config", "user", "job_id"});
  if (files.empty()) throw InvalidArgument("the upload holds no files");
  if (files.size() > kMaxUploadFiles) {
    throw InvalidArgument("an upload holds at most " + std::to_string(kMaxUploadFiles) + " files");
  }
  // The files go to a private directory outside the artifact root; Import reads, validates
  // and writes them anew, and on any failure nothing reaches the store or the catalog.
  TempDir dir;
  std::set<std::string> names;
  for (const httplib::MultipartFormData* part : files) {
    CheckUploadName(part->filename);
    if (!names.insert(part->filename).second) {
      throw InvalidArgument("file " + part->filename + " is uploaded twice",
                            {{"file", part->filename}});
    }
    std::ofstream out(dir.path() / part->filename, std::ios::binary);
    out.write(part->content.data(), static_cast<std::streamsize>(part->content.size()));
    if (!out.flush()) throw InternalError("cannot write an uploaded file to a temporary directory");
  }
  JobSpec spec;
  spec.job_id = StringField(fields, "job_id", "");
  if (!spec.job_id.empty()) ValidateJobId(spec.job_id);
  spec.alpha_name = StringField(fields, "alpha", "");
  spec.start_date = Date::Parse(StringField(fields, "start", ""), "start");
  spec.end_date = Date::Parse(StringField(fields, "end", ""), "end");
  spec.weight_method = StringField(fields, "weight_method", spec.weight_method);
  spec.config_json = wire::ParseConfigText(StringField(fields, "config", "{}"), "config");
  spec.created_by = StringField(fields, "user", caller.user);
  if (caller.role != Role::kAdmin && spec.created_by != caller.user) {
    throw PermissionDenied("a submitter imports as itself ('" + caller.user + "')",
                           {{"user", caller.user}});
  }
  return service_.jobs().Import(dir.path(), std::move(spec));
}

void Server::Impl::AddJobRoutes() {
  const std::string job = R"(/api/v1/jobs/([^/]+))";
  auto job_id_of = [](const httplib::Request& req) {
    const std::string id = req.matches[1];
    ValidateJobId(id);
    return id;
  };

  Route("GET", "/api/v1/jobs", "list_jobs", Role::kReader,
        [this](const httplib::Request& req, httplib::Response& res, const Caller&) {
          wire::ListRequest request = wire::ParseListRequest(QueryFields(req), ApiName);
          const JobPage page = service_.jobs().ListJobs(request.filter, request.page);
          res.set_content(wire::PageText(page), "application/json");
        });
  Route("POST", "/api/v1/jobs", "submit", Role::kSubmitter,
        [this](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
          SubmitResult result = Submit(BodyObject(req), caller);
          SendJson(res, wire::SubmitJson(result), result.created ? 201 : 200);
        });
  Route("GET", job, "show_job", Role::kReader,
        [this, job_id_of](const httplib::Request& req, httplib::Response& res, const Caller&) {
          const JobRecord record = service_.jobs().GetJob(job_id_of(req));
          SendJson(res, wire::ShowJson(service_.jobs(), record));
        });
  Route("GET", job + "/result", "result", Role::kReader,
        [this, job_id_of](const httplib::Request& req, httplib::Response& res, const Caller&) {
          const std::string id = job_id_of(req);
          QueryFields(req);
          ReadOptions options = wire::ParseReadRequest(
              req.get_param_value("from"), req.get_param_value("to"),
              req.get_param_value("columns"), req.get_param_value("tables"), ApiName);
          ReadStats stats;
          BacktestResult result = service_.jobs().GetResult(id, options, &stats);
          SendJson(res, wire::ResultJson(id, result, options, stats));
        });
  Route("GET", job + "/charts", "charts", Role::kReader,
        [this, job_id_of](const httplib::Request& req, httplib::Response& res, const Caller&) {
          SendJson(res, internal::ChartSeries(service_.jobs(), job_id_of(req), true));
        });
  Route("GET", job + "/events", "events", Role::kReader,
        [this, job_id_of](const httplib::Request& req, httplib::Response& res, const Caller&) {
          StreamEvents(job_id_of(req), res);
        });

  struct Move {
    std::string name;
    std::string verb;
  };
  for (const Move& move :
       {Move{"cancel", "cancel"}, Move{"resume", "resume"}, Move{"pin", "pin"}}) {
    Route("POST", job + "/" + move.name, move.name, Role::kSubmitter,
          [this, job_id_of, move](const httplib::Request& req, httplib::Response& res,
                                  const Caller& caller) {
            const std::string id = job_id_of(req);
            const Json body = BodyObject(req);
            OnlyKeys(body, move.name == "pin" ? std::set<std::string>{"pinned"}
                                              : std::set<std::string>{});
            RequireOwner(caller, service_.jobs().GetJob(id), move.verb);
            JobRecord after;
            if (move.name == "cancel") {
              after = service_.jobs().Cancel(id);
            } else if (move.name == "resume") {
              after = service_.jobs().Resume(id);
            } else {
              service_.jobs().Pin(id, BoolField(body, "pinned", true));
              after = service_.jobs().GetJob(id);
            }
            SendJson(res, wire::JobJson(after));
          });
  }
  Route("POST", "/api/v1/import", "import", Role::kSubmitter,
        [this](const httplib::Request& req, httplib::Response& res, const Caller& caller) {
          SubmitResult result = Import(req, caller);
          SendJson(res, wire::ImportJson(result), result.created ? 201 : 200);
        });
}

void Server::Impl::StreamEvents(const std::string& job_id, httplib::Response& res) {
  // Fail before the stream starts when the job does not exist (404 rather than an empty stream).
  service_.jobs().GetJob(job_id);
  struct State {
    std::string last;
    bool finished = false;
  };
  auto state = std::make_shared<State>();
  res.set_header("Cache-Control", "no-store");
  res.set_chunked_content_provider(
      "text/event-stream", [this, job_id, state](size_t, httplib::DataSink& sink) {
        if (state->finished || stopping_) {
          sink.done();
          return true;
        }
        try {
          const JobRecord job = service_.jobs().GetJob(job_id);
          const Json doc = {
              {"job_id", job.job_id},
              {"status", ToString(job.status)},
              {"progress_pct", job.progress_pct},
              {"heartbeat_at",
               job.heartbeat_at ? Json(FormatTimestamp(*job.heartbeat_at)) : Json(nullptr)},
              {"cancel_requested", job.cancel_requested},
              {"error_message", job.error_message ? Json(*job.error_message) : Json(nullptr)}};
          const std::string data = JsonLine(doc);
          if (data != state->last) {
            const std::string event = "event: job\ndata: " + data + "\n\n";
            if (!sink.write(event.data(), event.size())) return false;
            state->last = data;
          }
          if (IsTerminal(job.status)) {
            state->finished = true;
            sink.done();
            return true;
          }
        } catch (const Error& e) {
          const std::string event =
              "event: error\ndata: " + JsonLine(wire::ErrorJson(wire::Classify(e))) + "\n\n";
          sink.write(event.data(), event.size());
          sink.done();
          return true;
        }
        // The stream polls the row: a heartbeat shows within one interval (250 ms by default).
        std::this_thread::sleep_for(options_.event_poll_interval);
        return true;
      });
}

// --- Tables and comparisons -----------------------------------------------------------------

void Server::Impl::AddTableRoutes() {
  Route("GET", R"(/api/v1/jobs/([^/]+)/tables/([^/]+))", "table", Role::kReader,
        [this](const httplib::Request& req, httplib::Response& res, const Caller&) {
          const std::string id = req.matches[1];
          const std::string name = req.matches[2];
          ValidateJobId(id);
          CheckTableName(name);
          QueryFields(req);
          const internal::TableFormat format = internal::ChooseTableFormat(req);
          if (IsJsonArtifact(name)) {
            throw InvalidArgument(name +
                                      " is a JSON artifact, not a table: it is in the "
                                      "result (GET .../result?tables=" +
                                      name + ")",
                                  {{"table", name}});
          }
          ReadOptions options =
              wire::ParseReadRequest(req.get_param_value("from"), req.get_param_value("to"),
                                     req.get_param_value("columns"), name, ApiName);
          // Opening checks the bundle, the file's size, schema and rows: its errors still have
          // their status. The table is then read and sent a step of row groups at a time.
          std::unique_ptr<TableStream> table = service_.jobs().OpenTable(id, name, options);
          switch (format) {
            case internal::TableFormat::kArrow:
              internal::SendArrowStream(res, std::move(table), req.get_param_value("compression"));
              break;
            case internal::TableFormat::kParquet:
              internal::SendParquet(res, std::move(table));
              break;
            case internal::TableFormat::kJson:
              internal::SendJsonTable(
                  res, std::move(table),
                  [this, id, name, options](const std::vector<std::string>& columns) {
                    ReadOptions one = options;
                    one.columns = columns;
                    return service_.jobs().OpenTable(id, name, one);
                  });
              break;
          }
        });
  Route(
      "GET", "/api/v1/compare/ic", "compare_ic", Role::kReader,
      [this](const httplib::Request& req, httplib::Response& res, const Caller&) {
        std::vector<std::string> ids = wire::SplitList(req.get_param_value("ids"));
        if (ids.empty()) {
          // By list filters: the completed jobs among the newest that match.
          std::map<std::string, std::string> fields = QueryFields(req, {"ids"});
          fields["status"] = "completed";
          if (!fields.contains("limit")) fields["limit"] = std::to_string(kMaxCompareJobs);
          wire::ListRequest request = wire::ParseListRequest(fields, ApiName);
          for (const JobRecord& job : service_.jobs().ListJobs(request.filter, request.page).jobs) {
            ids.push_back(job.job_id);
          }
        }
        if (ids.size() > static_cast<size_t>(kMaxCompareJobs)) {
          throw InvalidArgument("at most " + std::to_string(kMaxCompareJobs) +
                                " jobs are compared at once");
        }
        Json series = Json::array();
        for (const std::string& id : ids) {
          ValidateJobId(id);
          series.push_back(internal::ChartSeries(service_.jobs(), id, false));
        }
        SendJson(res, {{"series", series}});
      });
}

// --- Maintenance (admin) ----------------------------------------------------------------------

void Server::Impl::AddAdminRoutes() {
  Route("POST", "/api/v1/cleanup", "cleanup", Role::kAdmin,
        [this](const httplib::Request& req, httplib::Response& res, const Caller&) {
          const Json body = BodyObject(req);
          OnlyKeys(body, {"retention_days", "dry_run"});
          RetentionOptions options;
          options.retention_days = IntField(body, "retention_days", options.retention_days);
          options.dry_run = BoolField(body, "dry_run", false);
          RetentionReport report = service_.Cleanup(options);
          if (!report.dry_run) {
            std::lock_guard lock(gauges_.mutex);
            gauges_.cleanup_removed = report.removed;
            gauges_.cleanup_at = UnixSeconds(btstore::Now());
          }
          SendJson(res, wire::RetentionJson(report, options.retention_days));
        });
  Route("POST", "/api/v1/verify", "verify", Role::kAdmin,
        [this](const httplib::Request& req, httplib::Response& res, const Caller&) {
          const Json body = BodyObject(req);
          OnlyKeys(body, {"job_ids"});
          VerifyOptions options;
          if (body.contains("job_ids")) {
            if (!body["job_ids"].is_array()) throw InvalidArgument("job_ids must be a list");
            for (const Json& id : body["job_ids"]) {
              if (!id.is_string()) throw InvalidArgument("job_ids must be strings");
              ValidateJobId(id.get<std::string>());
              options.job_ids.push_back(id.get<std::string>());
            }
          }
          VerifyReport report = service_.Verify(options);
          {
            std::lock_guard lock(gauges_.mutex);
            gauges_.verify_checked = report.checked;
            gauges_.verify_problems = static_cast<int64_t>(report.problems.size());
            gauges_.verify_at = UnixSeconds(btstore::Now());
          }
          SendJson(res, wire::VerifyJson(report));
        });
}

// --- Monitoring -------------------------------------------------------------------------------

std::string Server::Impl::MetricsText() {
  std::ostringstream out;
  const Timestamp now = service_.clock().Now();
  const std::vector<StatusCount> counts = service_.catalog().CountJobs();
  out << "# HELP btstore_jobs Jobs in the catalog, by status.\n# TYPE btstore_jobs gauge\n";
  for (JobStatus status : {JobStatus::kPending, JobStatus::kRunning, JobStatus::kCompleted,
                           JobStatus::kFailed, JobStatus::kCancelled}) {
    int64_t count = 0;
    for (const StatusCount& c : counts) {
      if (c.status == status) count = c.count;
    }
    out << "btstore_jobs{status=\"" << ToString(status) << "\"} " << count << "\n";
  }
  double pending_age = 0, heartbeat_age = 0;
  for (const StatusCount& c : counts) {
    if (c.status == JobStatus::kPending) {
      pending_age = std::chrono::duration<double>(now - c.oldest_created_at).count();
    }
    if (c.status == JobStatus::kRunning && c.oldest_heartbeat_at) {
      heartbeat_age = std::chrono::duration<double>(now - *c.oldest_heartbeat_at).count();
    }
  }
  out << "# HELP btstore_pending_oldest_age_seconds Age of the oldest pending job.\n"
         "# TYPE btstore_pending_oldest_age_seconds gauge\n"
         "btstore_pending_oldest_age_seconds "
      << pending_age << "\n";
  out << "# HELP btstore_running_heartbeat_age_seconds Age of the stalest heartbeat of a "
         "running job.\n# TYPE btstore_running_heartbeat_age_seconds gauge\n"
         "btstore_running_heartbeat_age_seconds "
      << heartbeat_age << "\n";
  {
    std::lock_guard lock(gauges_.mutex);
    auto gauge = [&out](const char* name, const char* help, const auto& value) {
      if (!value) return;
      out << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
          << name << " " << *value << "\n";
    };
    gauge("btstore_cleanup_last_removed", "Jobs the last cleanup through this server removed.",
          gauges_.cleanup_removed);
    gauge("btstore_cleanup_last_run_timestamp_seconds", "When that cleanup ran.",
          gauges_.cleanup_at);
    gauge("btstore_verify_last_checked", "Bundles the last verify through this server checked.",
          gauges_.verify_checked);
    gauge("btstore_verify_last_problems", "Problems the last verify found.",
          gauges_.verify_problems);
    gauge("btstore_verify_last_run_timestamp_seconds", "When that verify ran.", gauges_.verify_at);
  }
  request_metrics_.Write(out);
  return out.str();
}

void Server::Impl::AddMonitoringRoutes() {
  Route("GET", "/healthz", "healthz", std::nullopt,
        [this](const httplib::Request&, httplib::Response& res, const Caller&) {
          PageRequest one;
          one.limit = 1;
          service_.catalog().ListJobs(JobFilter{}, one);
          SendJson(res, {{"status", "ok"}, {"catalog", service_.catalog().Backend()}});
        });
  Route("GET", "/metrics", "metrics", std::nullopt,
        [this](const httplib::Request&, httplib::Response& res, const Caller&) {
          res.set_content(MetricsText(), "text/plain; version=0.0.4");
        });
  Route("GET", "/api/v1/openapi.json", "openapi", std::nullopt,
        [](const httplib::Request&, httplib::Response& res, const Caller&) {
          res.set_content(std::string(internal::Assets().at("openapi.json")), "application/json");
        });
  Route("GET", "/api/v1/whoami", "whoami", Role::kReader,
        [this](const httplib::Request&, httplib::Response& res, const Caller& caller) {
          SendJson(res, {{"user", caller.user},
                         {"role", ToString(caller.role)},
                         {"auth", options_.require_tokens ? "token" : "none"}});
        });
}

// --- The page ---------------------------------------------------------------------------------

void Server::Impl::AddPageRoutes() {
  static const std::map<std::string, std::string, std::less<>> kTypes = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"}};
  auto serve = [](const std::string& name, httplib::Response& res) {
    const auto& assets = internal::Assets();
    auto it = assets.find(name);
    const std::string ext = fs::path(name).extension().string();
    if (it == assets.end() || !kTypes.contains(ext)) {
      throw InvalidArgument("no page file " + name);
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_content(std::string(it->second), kTypes.find(ext)->second);
  };
  Route("GET", "/", "page", std::nullopt,
        [serve](const httplib::Request&, httplib::Response& res, const Caller&) {
          serve("index.html", res);
        });
  Route("GET", R"(/static/([A-Za-z0-9_.-]+))", "static", std::nullopt,
        [serve](const httplib::Request& req, httplib::Response& res, const Caller&) {
          serve(req.matches[1], res);
        });
}

// --- Server -----------------------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::unique_ptr<Server> Server::Make(Service& service, const ServerOptions& options) {
  if (options.threads < 1) throw InvalidArgument("threads must be at least 1");
  if (options.port < 0 || options.port > 65535) {
    throw InvalidArgument("port must be 0..65535", {{"port", std::to_string(options.port)}});
  }
  if (!options.require_tokens && !IsLoopback(options.host)) {
    throw InvalidArgument(
        "--auth none is allowed only on a loopback address (127.0.0.1, ::1): "
        "anyone who reaches " +
            options.host + " could act as an admin",
        {{"host", options.host}});
  }
  auto impl = std::make_unique<Impl>(service, options);
  impl->Setup();
  impl->Bind();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port(); }
void Server::Run() { impl_->Run(); }
void Server::Stop() { impl_->Stop(); }

void RunUntilSignalled(Server& server) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread waiter([&server, signals] {
    int received = 0;
    sigwait(&signals, &received);
    server.Stop();
  });
  server.Run();
  // Run() also returns when listening fails; wake the waiter so it can be joined.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
}

}  // namespace btstore::http
