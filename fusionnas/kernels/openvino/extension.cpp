// OpenVINO extension: the ONNX nodes of domain "fusionnas" (written by `fusionnas export --onnx-form native`,
// see fusionnas/kernels/onnx_nodes.py) as operations whose evaluate() runs the native kernels.
//
// Node signatures (all tensors float32, x is NCHW):
//   WHTPointwise(x, coef[n], thr[n], out_scale[c_out], out_shift[c_out]) attrs n, c_out, act
//   Butterfly(x, w_0 .. w_{L-1}, out_scale[c_out], out_shift[c_out])     attrs c_out, width_in, shape, act
//       shape = (G, k_out, k_in) per stage, w_s a (G, k_out, k_in) array
//   WHT2d(x, coef[C or 1, th, tw], thr[C or 1, th, tw])                  attrs tile = (th, tw), stride, out_norm
// Semantics: fusionnas_kernels.h (fn_wht_pointwise, fn_butterfly, fn_wht2d).
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fusionnas_kernels.h"
#include "openvino/core/extension.hpp"
#include "openvino/core/op_extension.hpp"
#include "openvino/frontend/onnx/extension/conversion.hpp"
#include "openvino/op/op.hpp"

namespace fusionnas {
namespace {

// OpenVINO runs its streams and requests around an op and does not tell it its thread count, so a
// kernel call takes the FUSIONNAS_THREADS environment variable's count (fusionnas sets it to the
// compiled model's inference threads), one thread (the calling one) where it is unset.
int kernel_threads() {
    const char* value = std::getenv("FUSIONNAS_THREADS");
    const int parsed = value ? std::atoi(value) : 1;
    return parsed > 0 ? parsed : 1;
}

ov::Dimension ceil_div(const ov::Dimension& size, int64_t by) {
    if (by == 1) {
        return size;
    }
    if (size.is_dynamic()) {
        return ov::Dimension::dynamic();
    }
    return ov::Dimension((size.get_length() + by - 1) / by);
}

const float* data_of(const ov::Tensor& tensor) {
    return tensor.data<const float>();
}

}  // namespace

// A failed check names the node and its inputs' shapes (OpenVINO's message).
#define FN_CHECK(cond, ...) NODE_VALIDATION_CHECK(this, cond, __VA_ARGS__)

class WHTPointwise : public ov::op::Op {
public:
    OPENVINO_OP("WHTPointwise", "fusionnas");

    WHTPointwise() = default;
    WHTPointwise(const ov::OutputVector& args, int64_t n, int64_t c_out, int64_t act)
        : Op(args), m_n(n), m_c_out(c_out), m_act(act) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        FN_CHECK(get_input_size() == 5, "WHTPointwise takes x, coef, thr, out_scale, out_shift");
        for (size_t i = 0; i < get_input_size(); ++i) {
            FN_CHECK(get_input_element_type(i) == ov::element::f32, "WHTPointwise input ", i, " must be f32");
        }
        FN_CHECK(m_n > 0 && (m_n & (m_n - 1)) == 0, "n must be a power of two, got ", m_n);
        FN_CHECK(m_c_out > 0 && m_c_out <= m_n, "c_out must be in 1..n, got ", m_c_out);
        const auto& shape = get_input_partial_shape(0);
        FN_CHECK(shape.rank().compatible(4), "x must be NCHW");
        if (shape.rank().is_dynamic()) {
            set_output_type(0, ov::element::f32, ov::PartialShape::dynamic(4));
            return;
        }
        FN_CHECK(shape[1].is_dynamic() || shape[1].get_length() <= m_n, "x has more channels than n");
        set_output_type(0, ov::element::f32, ov::PartialShape{shape[0], m_c_out, shape[2], shape[3]});
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<WHTPointwise>(args, m_n, m_c_out, m_act);
    }

    bool visit_attributes(ov::AttributeVisitor& visitor) override {
        visitor.on_attribute("n", m_n);
        visitor.on_attribute("c_out", m_c_out);
        visitor.on_attribute("act", m_act);
        return true;
    }

    bool has_evaluate() const override {
        return true;
    }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const ov::Shape& shape = inputs[0].get_shape();
        outputs[0].set_shape({shape[0], static_cast<size_t>(m_c_out), shape[2], shape[3]});
        fn_wht_pointwise(data_of(inputs[0]), outputs[0].data<float>(), shape[0], shape[1], m_c_out,
                         shape[2] * shape[3], m_n, data_of(inputs[1]), data_of(inputs[2]), data_of(inputs[3]),
                         data_of(inputs[4]), static_cast<int>(m_act), kernel_threads());
        return true;
    }

private:
    int64_t m_n = 1;
    int64_t m_c_out = 1;
    int64_t m_act = 0;
};

class Butterfly : public ov::op::Op {
public:
    OPENVINO_OP("Butterfly", "fusionnas");

    Butterfly() = default;
    Butterfly(const ov::OutputVector& args, int64_t c_out, int64_t width_in, std::vector<int64_t> shape, int64_t act)
        : Op(args), m_c_out(c_out), m_width_in(width_in), m_shape(std::move(shape)), m_act(act) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        const size_t stages = m_shape.size() / 3;
        FN_CHECK(stages >= 1 && m_shape.size() == 3 * stages, "shape must be (G, k_out, k_in) per stage");
        FN_CHECK(get_input_size() == stages + 3, "Butterfly takes x, one weight per stage, out_scale, out_shift");
        for (size_t i = 0; i < get_input_size(); ++i) {
            FN_CHECK(get_input_element_type(i) == ov::element::f32, "Butterfly input ", i, " must be f32");
        }
        int64_t width = m_width_in;
        for (size_t s = 0; s < stages; ++s) {
            const int64_t groups = m_shape[3 * s], k_out = m_shape[3 * s + 1], k_in = m_shape[3 * s + 2];
            FN_CHECK(groups > 0 && k_out > 0 && groups * k_in == width, "stage ", s, " reads ", groups * k_in,
                     " channels, its input has ", width);
            const auto& weight = get_input_partial_shape(1 + s);
            FN_CHECK(weight.compatible(ov::PartialShape{groups, k_out, k_in}), "stage ", s,
                     " weight must be (G, k_out, k_in)");
            width = groups * k_out;
        }
        FN_CHECK(m_c_out > 0 && m_c_out <= width, "c_out must be in 1..", width, ", got ", m_c_out);
        const auto& shape = get_input_partial_shape(0);
        FN_CHECK(shape.rank().compatible(4), "x must be NCHW");
        if (shape.rank().is_dynamic()) {
            set_output_type(0, ov::element::f32, ov::PartialShape::dynamic(4));
            return;
        }
        FN_CHECK(shape[1].is_dynamic() || shape[1].get_length() <= m_width_in, "x has more channels than width_in");
        set_output_type(0, ov::element::f32, ov::PartialShape{shape[0], m_c_out, shape[2], shape[3]});
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<Butterfly>(args, m_c_out, m_width_in, m_shape, m_act);
    }

    bool visit_attributes(ov::AttributeVisitor& visitor) override {
        visitor.on_attribute("c_out", m_c_out);
        visitor.on_attribute("width_in", m_width_in);
        visitor.on_attribute("shape", m_shape);
        visitor.on_attribute("act", m_act);
        return true;
    }

    bool has_evaluate() const override {
        return true;
    }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const ov::Shape& shape = inputs[0].get_shape();
        const int stages = static_cast<int>(m_shape.size() / 3);
        std::vector<const float*> weights;
        for (int s = 0; s < stages; ++s) {
            weights.push_back(data_of(inputs[1 + s]));
        }
        outputs[0].set_shape({shape[0], static_cast<size_t>(m_c_out), shape[2], shape[3]});
        fn_butterfly(data_of(inputs[0]), outputs[0].data<float>(), shape[0], shape[1], shape[2] * shape[3],
                     m_width_in, m_c_out, stages, m_shape.data(), weights.data(), data_of(inputs[1 + stages]),
                     data_of(inputs[2 + stages]), static_cast<int>(m_act), kernel_threads());
        return true;
    }

private:
    int64_t m_c_out = 1;
    int64_t m_width_in = 1;
    std::vector<int64_t> m_shape;
    int64_t m_act = 0;
};

class WHT2d : public ov::op::Op {
public:
    OPENVINO_OP("WHT2d", "fusionnas");

    WHT2d() = default;
    WHT2d(const ov::OutputVector& args, std::vector<int64_t> tile, int64_t stride, float out_norm)
        : Op(args), m_tile(std::move(tile)), m_stride(stride), m_out_norm(out_norm) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        FN_CHECK(get_input_size() == 3, "WHT2d takes x, coef, thr");
        for (size_t i = 0; i < get_input_size(); ++i) {
            FN_CHECK(get_input_element_type(i) == ov::element::f32, "WHT2d input ", i, " must be f32");
        }
        FN_CHECK(m_tile.size() == 2, "tile must be (th, tw)");
        const int64_t smallest = m_stride == 2 ? 2 : 1;
        for (int64_t t : m_tile) {
            FN_CHECK(t >= smallest && (t & (t - 1)) == 0, "tile sides must be powers of two (>= 2 at stride 2)");
        }
        FN_CHECK(m_stride == 1 || m_stride == 2, "stride must be 1 or 2");
        const auto& coef = get_input_partial_shape(1);
        FN_CHECK(coef.compatible(get_input_partial_shape(2)), "coef and thr must have one shape");
        FN_CHECK(coef.rank().compatible(3), "coef must be (C or 1, th, tw)");
        const auto& shape = get_input_partial_shape(0);
        FN_CHECK(shape.rank().compatible(4), "x must be NCHW");
        if (shape.rank().is_dynamic()) {
            set_output_type(0, ov::element::f32, ov::PartialShape::dynamic(4));
            return;
        }
        if (coef.rank().is_static()) {
            FN_CHECK(coef[1].compatible(m_tile[0]) && coef[2].compatible(m_tile[1]), "coef must be (C or 1, th, tw)");
            FN_CHECK(coef[0].compatible(1) || coef[0].compatible(shape[1]), "coef must have 1 or C rows");
        }
        const ov::PartialShape out{shape[0], shape[1], ceil_div(shape[2], m_stride), ceil_div(shape[3], m_stride)};
        set_output_type(0, ov::element::f32, out);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<WHT2d>(args, m_tile, m_stride, m_out_norm);
    }

    bool visit_attributes(ov::AttributeVisitor& visitor) override {
        visitor.on_attribute("tile", m_tile);
        visitor.on_attribute("stride", m_stride);
        visitor.on_attribute("out_norm", m_out_norm);
        return true;
    }

    bool has_evaluate() const override {
        return true;
    }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const ov::Shape& shape = inputs[0].get_shape();
        const size_t stride = static_cast<size_t>(m_stride);
        outputs[0].set_shape({shape[0], shape[1], (shape[2] + stride - 1) / stride, (shape[3] + stride - 1) / stride});
        // Per-channel coefficients unless coef has one row for a map with more channels.
        const int shared = inputs[1].get_shape()[0] == 1 && shape[1] != 1;
        fn_wht2d(data_of(inputs[0]), outputs[0].data<float>(), shape[0], shape[1], shape[2], shape[3], m_tile[0],
                 m_tile[1], static_cast<int>(m_stride), data_of(inputs[1]), data_of(inputs[2]), shared, m_out_norm,
                 kernel_threads());
        return true;
    }

private:
    std::vector<int64_t> m_tile;
    int64_t m_stride = 1;
    float m_out_norm = 1.0f;
};

#undef FN_CHECK

namespace {

ov::OutputVector inputs_of(const ov::frontend::NodeContext& node) {
    ov::OutputVector inputs;
    for (size_t i = 0; i < node.get_input_size(); ++i) {
        inputs.push_back(node.get_input(static_cast<int>(i)));
    }
    return inputs;
}

ov::OutputVector convert_wht_pointwise(const ov::frontend::NodeContext& node) {
    return std::make_shared<WHTPointwise>(inputs_of(node), node.get_attribute<int64_t>("n"),
                                          node.get_attribute<int64_t>("c_out"), node.get_attribute<int64_t>("act", 0))
        ->outputs();
}

ov::OutputVector convert_butterfly(const ov::frontend::NodeContext& node) {
    return std::make_shared<Butterfly>(inputs_of(node), node.get_attribute<int64_t>("c_out"),
                                       node.get_attribute<int64_t>("width_in"),
                                       node.get_attribute<std::vector<int64_t>>("shape"),
                                       node.get_attribute<int64_t>("act", 0))
        ->outputs();
}

ov::OutputVector convert_wht2d(const ov::frontend::NodeContext& node) {
    return std::make_shared<WHT2d>(inputs_of(node), node.get_attribute<std::vector<int64_t>>("tile"),
                                   node.get_attribute<int64_t>("stride", 1), node.get_attribute<float>("out_norm"))
        ->outputs();
}

}  // namespace
}  // namespace fusionnas

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<fusionnas::WHTPointwise>>(),
    std::make_shared<ov::OpExtension<fusionnas::Butterfly>>(),
    std::make_shared<ov::OpExtension<fusionnas::WHT2d>>(),
    std::make_shared<ov::frontend::onnx::ConversionExtension>("WHTPointwise", "fusionnas",
                                                              fusionnas::convert_wht_pointwise),
    std::make_shared<ov::frontend::onnx::ConversionExtension>("Butterfly", "fusionnas", fusionnas::convert_butterfly),
    std::make_shared<ov::frontend::onnx::ConversionExtension>("WHT2d", "fusionnas", fusionnas::convert_wht2d),
}));
