// oneDNN peer benchmark: times oneDNN's vanilla RNN primitive (tanh, one layer,
// unidirectional left2right, fp32, h0 = 0) on one shape.
//
//   rnn_bench DIR T B I H RUNS
//
// DIR holds the inputs written by run.py as raw little-endian fp32:
//   x.bin [T,B,I]   w_ih.bin [H,I]   w_hh.bin [H,H]   (nn.RNN layouts)
//   bias.bin [H] = b_ih + b_hh       dy.bin [T,B,H]   (output gradient for training)
// and receives y.bin [T,B,H] (inference output), y_train.bin (forward_training output),
// dx.bin [T,B,I] (backward's diff_src_layer). stdout: one JSON line with the medians in ms.
//
// Weights are given in ldgoi (nn.RNN's [O,I] per gate) and reordered once, outside the
// timed loop, into the layout each primitive chose (format_tag::any).
#include <dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static std::vector<float> load(const std::string &path, size_t n) {
    std::vector<float> v(n);
    std::ifstream f(path, std::ios::binary);
    if (!f.read(reinterpret_cast<char *>(v.data()), n * sizeof(float)))
        throw std::runtime_error("cannot read " + path);
    return v;
}

static void save(const std::string &path, const memory &m, size_t n) {
    std::ofstream f(path, std::ios::binary);
    f.write(static_cast<const char *>(m.get_data_handle()), n * sizeof(float));
}

static memory plain(const memory::dims &dims, tag t, const engine &eng,
                    const std::vector<float> &src = {}) {
    memory m({dims, dt::f32, t}, eng);
    std::memcpy(m.get_data_handle(), src.data(), src.size() * sizeof(float));
    return m;
}

// The user's ldgoi weights reordered into `want` (the primitive's layout), once.
static memory to_layout(memory user, const memory::desc &want, const engine &eng, stream &s) {
    if (user.get_desc() == want) return user;
    memory m(want, eng);
    reorder(user, m).execute(s, user, m);
    s.wait();
    return m;
}

// RNN_BENCH_CLOCK=thread: the calling thread's CPU time (with OMP_NUM_THREADS=1 oneDNN runs
// on it), which a loaded machine inflates far less than the wall clock.
static double now_ms() {
    const char *clock = std::getenv("RNN_BENCH_CLOCK");
    if (clock != nullptr && std::string(clock) == "thread") {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
    }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
static double median_ms(int runs, F &&step, stream &s) {
    for (int i = 0; i < 3; ++i) step();  // warm-up
    s.wait();
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) {
        const double t0 = now_ms();
        step();
        s.wait();
        t.push_back(now_ms() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main(int argc, char **argv) try {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s DIR T B I H RUNS\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    const memory::dim T = std::atol(argv[2]), B = std::atol(argv[3]), I = std::atol(argv[4]), H = std::atol(argv[5]);
    const int runs = std::atoi(argv[6]);

    engine eng(engine::kind::cpu, 0);
    stream s(eng);

    // Logical dims: src_layer [T,B,I], weights_layer [L,D,I,G,O], weights_iter [L,D,H,G,O],
    // bias [L,D,G,O], dst_layer [T,B,H]; L = D = G = 1.
    const memory::dims x_dims{T, B, I}, y_dims{T, B, H}, wl_dims{1, 1, I, 1, H}, wi_dims{1, 1, H, 1, H},
        b_dims{1, 1, 1, H};
    memory x = plain(x_dims, tag::tnc, eng, load(dir + "/x.bin", T * B * I));
    memory w_ih = plain(wl_dims, tag::ldgoi, eng, load(dir + "/w_ih.bin", H * I));
    memory w_hh = plain(wi_dims, tag::ldgoi, eng, load(dir + "/w_hh.bin", H * H));
    memory bias = plain(b_dims, tag::ldgo, eng, load(dir + "/bias.bin", H));
    const memory::desc any_wl(wl_dims, dt::f32, tag::any), any_wi(wi_dims, dt::f32, tag::any);
    // Training passes h0 = 0 explicitly: with src_iter left out, oneDNN 2.6.3's backward got
    // dW_hh wrong here (sum of da_t h_t^T instead of da_t h_{t-1}^T); inference is correct without it.
    memory h0 = plain({1, 1, B, H}, tag::ldnc, eng, std::vector<float>(B * H, 0.f));
    const memory::desc x_md = x.get_desc(), h0_md = h0.get_desc(), b_md = bias.get_desc(),
                       y_md(y_dims, dt::f32, tag::tnc), none;

    // ---- forward inference -------------------------------------------------------------
    vanilla_rnn_forward::primitive_desc inf_pd(
        vanilla_rnn_forward::desc(prop_kind::forward_inference, algorithm::eltwise_tanh,
                                  rnn_direction::unidirectional_left2right, x_md, none, any_wl, any_wi, b_md, y_md,
                                  none),
        eng);
    memory inf_wl = to_layout(w_ih, inf_pd.weights_layer_desc(), eng, s);
    memory inf_wi = to_layout(w_hh, inf_pd.weights_iter_desc(), eng, s);
    memory y(inf_pd.dst_layer_desc(), eng);
    memory inf_scratch(inf_pd.scratchpad_desc(), eng);
    vanilla_rnn_forward inf(inf_pd);
    auto infer = [&] {
        inf.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_WEIGHTS_LAYER, inf_wl},
                        {DNNL_ARG_WEIGHTS_ITER, inf_wi},
                        {DNNL_ARG_BIAS, bias},
                        {DNNL_ARG_DST_LAYER, y},
                        {DNNL_ARG_SCRATCHPAD, inf_scratch}});
    };
    infer();
    s.wait();
    save(dir + "/y.bin", y, T * B * H);
    const double infer_ms = median_ms(runs, infer, s);

    // ---- training: forward_training + backward -----------------------------------------
    vanilla_rnn_forward::primitive_desc fwd_pd(
        vanilla_rnn_forward::desc(prop_kind::forward_training, algorithm::eltwise_tanh,
                                  rnn_direction::unidirectional_left2right, x_md, h0_md, any_wl, any_wi, b_md, y_md,
                                  none),
        eng);
    vanilla_rnn_backward::primitive_desc bwd_pd(
        vanilla_rnn_backward::desc(prop_kind::backward, algorithm::eltwise_tanh,
                                   rnn_direction::unidirectional_left2right, x_md, h0_md, any_wl, any_wi, b_md, y_md,
                                   none, x_md, h0_md, any_wl, any_wi, b_md, y_md, none),
        eng, fwd_pd);
    memory fwd_wl = to_layout(w_ih, fwd_pd.weights_layer_desc(), eng, s);
    memory fwd_wi = to_layout(w_hh, fwd_pd.weights_iter_desc(), eng, s);
    memory bwd_wl = to_layout(w_ih, bwd_pd.weights_layer_desc(), eng, s);
    memory bwd_wi = to_layout(w_hh, bwd_pd.weights_iter_desc(), eng, s);
    memory y_train(fwd_pd.dst_layer_desc(), eng);
    memory workspace(fwd_pd.workspace_desc(), eng);
    memory fwd_scratch(fwd_pd.scratchpad_desc(), eng), bwd_scratch(bwd_pd.scratchpad_desc(), eng);
    memory dy = plain(y_dims, tag::tnc, eng, load(dir + "/dy.bin", T * B * H));
    memory dx(bwd_pd.diff_src_layer_desc(), eng), dh0(bwd_pd.diff_src_iter_desc(), eng);
    memory dw_ih(bwd_pd.diff_weights_layer_desc(), eng), dw_hh(bwd_pd.diff_weights_iter_desc(), eng);
    memory db(bwd_pd.diff_bias_desc(), eng);
    vanilla_rnn_forward fwd(fwd_pd);
    vanilla_rnn_backward bwd(bwd_pd);
    auto train = [&] {
        fwd.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_SRC_ITER, h0},
                        {DNNL_ARG_WEIGHTS_LAYER, fwd_wl},
                        {DNNL_ARG_WEIGHTS_ITER, fwd_wi},
                        {DNNL_ARG_BIAS, bias},
                        {DNNL_ARG_DST_LAYER, y_train},
                        {DNNL_ARG_WORKSPACE, workspace},
                        {DNNL_ARG_SCRATCHPAD, fwd_scratch}});
        // oneDNN accumulates into the weight gradients: zero them, as zero_grad does in torch.
        for (memory *g : {&dw_ih, &dw_hh, &db}) std::memset(g->get_data_handle(), 0, g->get_desc().get_size());
        bwd.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_SRC_ITER, h0},
                        {DNNL_ARG_DIFF_SRC_ITER, dh0},
                        {DNNL_ARG_WEIGHTS_LAYER, bwd_wl},
                        {DNNL_ARG_WEIGHTS_ITER, bwd_wi},
                        {DNNL_ARG_BIAS, bias},
                        {DNNL_ARG_DST_LAYER, y_train},
                        {DNNL_ARG_DIFF_DST_LAYER, dy},
                        {DNNL_ARG_WORKSPACE, workspace},
                        {DNNL_ARG_DIFF_SRC_LAYER, dx},
                        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dw_ih},
                        {DNNL_ARG_DIFF_WEIGHTS_ITER, dw_hh},
                        {DNNL_ARG_DIFF_BIAS, db},
                        {DNNL_ARG_SCRATCHPAD, bwd_scratch}});
    };
    train();
    s.wait();
    save(dir + "/y_train.bin", y_train, T * B * H);
    save(dir + "/dx.bin", dx, T * B * I);
    // dW_hh back in nn.RNN's [H,H] layout, for the gradient check.
    memory dw_hh_user = plain(wi_dims, tag::ldgoi, eng);
    reorder(dw_hh, dw_hh_user).execute(s, dw_hh, dw_hh_user);
    s.wait();
    save(dir + "/dw_hh.bin", dw_hh_user, H * H);
    const double train_ms = median_ms(runs, train, s);

    const dnnl_version_t *v = dnnl_version();
    std::printf("{\"onednn\": \"%d.%d.%d\", \"infer_ms\": %.6f, \"train_ms\": %.6f}\n", v->major, v->minor, v->patch,
                infer_ms, train_ms);
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "rnn_bench: %s\n", e.what());
    return 1;
}
