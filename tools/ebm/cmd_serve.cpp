// ebm serve: the models behind HTTP (ebm/serve/). Thin: flags -> ServeSpec and
// ServeOptions, then load, bind, warm up, listen until SIGTERM.
#include <semaphore.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli.h"
#include "ebm/serve/http.h"
#include "ebm/serve/service.h"

namespace ebm::cli {

namespace {
std::atomic<int> g_stop_signal{0};
std::atomic<int> g_reloads_asked{0};
std::atomic<bool> g_server_done{false};
sem_t g_stop_sem;
extern "C" void on_stop_signal(int sig) {
  if (sig == SIGHUP) g_reloads_asked.fetch_add(1);
  else g_stop_signal.store(sig);
  sem_post(&g_stop_sem);
}
}  // namespace

void add_serve(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "serve",
      "Serve models over HTTP: the Open Inference Protocol (KServe V2) and a simple JSON API for\n"
      "scoring, guarding, denoising and inpainting, with dynamic batching and Prometheus metrics");
  struct Flags {
    std::vector<std::string> models;
    std::string detector, classifier, purifier, config;
    serve::ServeOptions o;
    serve::BatcherOptions b;
    Common c;
  };
  auto f = std::make_shared<Flags>();
  auto& o = f->o;
  auto& b = f->b;
  sub->add_option("--model", f->models, "Model to serve (repeatable): PATH or NAME=PATH; NAME defaults to the folder name");
  sub->add_option("--detector", f->detector, "Calibrated detector JSON (`ebm ood calibrate`) for the first --model");
  sub->add_option("--classifier", f->classifier, "Guard: the classifier behind the detector (needs --purifier)");
  sub->add_option("--purifier", f->purifier, "Guard: the energy for Langevin purification (its card's \"purify\" settings)");
  sub->add_option("--config", f->config,
                  "JSON: {\"models\":[{\"name\",\"path\",\"detector\"}],\"classifier\",\"purifier\"} (instead of the flags)")
      ->check(CLI::ExistingFile);
  sub->add_option("--host", o.host(), "Address to listen on (loopback only unless told)")->capture_default_str();
  sub->add_option("--port", o.port(), "TCP port (0 = any free port, printed at start)")->capture_default_str();
  sub->add_option("--workers", b.workers(), "Model worker threads; --threads are split between them")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-batch", b.max_batch(), "Rows per batched model call at most")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--max-delay-ms", b.max_delay_ms(), "How long a request may wait for batch-mates")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--queue-capacity", b.queue_capacity(), "Requests waiting or running at most; beyond it 503 + Retry-After")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--http-threads", o.http_threads(), "Threads that run requests (idle connections hold none)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-connections", o.max_connections(),
                  "Open connections at most; a new one evicts the longest-idle, or gets 503 when none is idle")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--keep-alive-ms", o.keep_alive_timeout_ms(), "Idle keep-alive connections are closed after this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--request-timeout-ms", o.request_timeout_ms(),
                  "A request's head and body must arrive within this of its first byte, else 408")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-body-bytes", o.max_body_bytes(), "Larger request bodies get 413")->capture_default_str();
  sub->add_option("--max-images-per-request", o.max_images_per_request(), "More images in one request get 413")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--timeout-ms", o.timeout_ms(), "Requests not answered within this get 504")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-steps", o.max_steps(), "Most Langevin steps a denoise/inpaint request may ask for")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_common(sub, f->c);
  sub->get_option("--threads")->description("Model threads in all, split between --workers (default: all cores but one)");
  sub->footer(
      "Endpoints (docs/serve.md has a curl example for each, docs/openapi.json the schemas):\n"
      "  GET  /v2/health/live | /v2/health/ready | /v2 | /v2/models/NAME | /v2/models/NAME/ready\n"
      "  POST /v2/models/NAME/infer      Open Inference Protocol; FP32 or UINT8 input [N,1,28,28]\n"
      "  POST /v1/score                  {\"images\":[...]} -> energy, score, ood, p_value per image\n"
      "  POST /v1/guard                  OOD check, purification, classification (422 when flagged)\n"
      "  POST /v1/denoise | /v1/inpaint  restored images\n"
      "  GET  /v1/models                 cards, detectors, hashes\n"
      "  GET  /metrics                   Prometheus text format\n"
      "Images are base64 8-bit PNGs or nested arrays of numbers in [0,1].\n"
      "Readiness turns 200 after every model is loaded and warmed up. SIGTERM (or Ctrl-C) stops\n"
      "accepting, finishes the requests in flight and exits 0. SIGHUP reloads every model and\n"
      "detector from disk without dropping a request (a failed reload keeps the old models);\n"
      "every answer names the model that produced it (X-Model-SHA256, \"model_sha256\").\n\n"
      "Example:\n"
      "  ebm serve --model models/fmnist-ood --detector models/fmnist-ood.detector.json --port 8080\n"
      "  curl -s localhost:8080/v1/score -d '{\"images\":[\"'$(base64 -w0 shirt.png)'\"]}'\n");
  sub->callback([&run, f] {
    run = [f] {
      apply_common(f->c);
      serve::ServeSpec spec;
      if (!f->config.empty()) {
        require(f->models.empty() && f->detector.empty() && f->classifier.empty() && f->purifier.empty(),
                "--config replaces --model, --detector, --classifier and --purifier; give one or the other");
        spec = serve::ServeSpec::from_config(f->config);
      } else {
        require(!f->models.empty(), "serve needs --model (or --config)");
        for (const auto& m : f->models) spec.models.push_back(serve::ServeSpec::parse_model(m));
        spec.models.front().detector = f->detector;
        spec.classifier = f->classifier;
        spec.purifier = f->purifier;
      }
      f->o.threads(f->c.threads).seed(f->c.seed).batcher(f->b);

      // SIGTERM and SIGINT: the handler only posts a semaphore (async-signal
      // safe), and a watcher thread does the shutdown. A handler rather than a
      // blocked mask plus sigwait, because threads that exist before this
      // point (OpenMP's pool) would keep the default action and kill the process.
      sem_init(&g_stop_sem, 0, 0);
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      sigaction(SIGTERM, &sa, nullptr);
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGHUP, &sa, nullptr);

      serve::Service service(spec, f->o);
      serve::HttpServer http(service);
      const int port = http.bind();
      std::fprintf(stderr, "ebm serve: listening on http://%s:%d (warming up)\n", f->o.host().c_str(), port);
      std::thread warm([&service, quiet = f->c.quiet] {
        try {
          service.warm_up();
          if (!quiet) std::fprintf(stderr, "ebm serve: ready\n");
        } catch (const std::exception& e) {  // stopped while warming up, or a model that cannot run
          std::fprintf(stderr, "ebm serve: warm-up failed: %s\n", e.what());
        }
      });
      // The watcher reloads on SIGHUP (the library does it: Service::reload)
      // and stops on SIGTERM/SIGINT.
      std::thread watcher([&service, &http, quiet = f->c.quiet] {
        int sig = 0;
        for (;;) {
          while (sem_wait(&g_stop_sem) != 0 && errno == EINTR) {
          }
          if (g_server_done.load()) return;  // woken by the main thread: the server stopped on its own
          sig = g_stop_signal.load();
          if (sig != 0) break;
          if (g_reloads_asked.exchange(0) == 0) continue;  // a SIGHUP already served by an earlier wake-up
          try {
            const auto r = service.reload();
            std::string hashes;
            for (const auto& m : r["models"])
              hashes += " " + m["name"].get<std::string>() + "=" + m["sha256"].get<std::string>().substr(0, 12) +
                        (m["changed"].get<bool>() ? " (new)" : "");
            std::fprintf(stderr, "ebm serve: SIGHUP, reloaded in %.2f s:%s\n", r["seconds"].get<double>(), hashes.c_str());
          } catch (const std::exception& e) {
            std::fprintf(stderr, "ebm serve: SIGHUP, reload failed, still serving the old models: %s\n", e.what());
          }
        }
        if (!quiet) std::fprintf(stderr, "ebm serve: %s, finishing requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        service.shutdown();  // readiness off; the batcher runs what it accepted
        http.stop();
      });
      http.listen();  // returns once stopped and every connection is done
      service.shutdown();
      g_server_done.store(true);
      sem_post(&g_stop_sem);  // wake the watcher if no signal did
      watcher.join();
      warm.join();
      if (!f->c.quiet) std::fprintf(stderr, "ebm serve: stopped\n");
      return 0;
    };
  });
}

}  // namespace ebm::cli
