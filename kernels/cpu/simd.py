"""A block of vector registers for ``@njit`` kernels: load, fused multiply-add and store.

LLVM vectorises numba's loops over the innermost index, so a row accumulated
over a list of other rows, ``z = Σ_t c_t w_t`` with each ``w_t`` a row of 128
floats, goes back to memory after every pass over it: those loads and stores,
and LLVM's run-time alias checks before each pass, cost more than the
arithmetic. With these intrinsics a kernel keeps a block of the row in
registers for the whole sum::

    j = 0
    while j + block_lanes(z) <= z.shape[0]:
        acc = block_zeros(z)                                # z[j:j + lanes] in registers
        for t in range(count):
            acc = block_fma(c[t], block_load(W[k[t]], j), acc)
        block_store(z, j, acc)
        j += block_lanes(z)
    ...                                                     # the last columns, a loop of scalars

A :class:`Block` is an LLVM vector of :data:`BLOCK_REGISTERS` machine registers'
worth of lanes (128 float32 or 64 float64 with AVX-512's 512-bit registers),
which numba passes around like a scalar and LLVM splits into registers. The
registers are the host CPU's widest (:data:`REGISTER_BITS`), so a block and the
operand loaded beside it fit the register file (32 registers with AVX-512, 16
with AVX). Loads and stores are unaligned and unchecked: the caller keeps
``0 ≤ start`` and ``start + lanes ≤ len(array)``. :func:`block_fma` contracts
each lane as LLVM contracts ``a += c * w`` in numba's own loops under
:data:`kernels.cpu._jit.FASTMATH`, so a sum taken in the same order gives the
same bits either way.
"""

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model


def host_register_bits():
    """The width in bits of the host CPU's widest vector registers (512 with AVX-512, 256 with AVX, else 128)."""
    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read this CPU's features: assume the narrowest vectors
        return 128
    if features.get("avx512f", False):
        return 512
    if features.get("avx", False):
        return 256
    return 128


#: Width of one machine register, in bits: the host CPU's widest vector registers.
REGISTER_BITS = host_register_bits()
#: Machine registers in one :class:`Block`: eight, the most that leave room for loads and addresses
#: in AVX's 16 registers; 128 float32 lanes with AVX-512.
BLOCK_REGISTERS = 8


class Block(types.Type):
    """:data:`BLOCK_REGISTERS` vector registers of ``dtype`` lanes, ``8 · REGISTER_BITS // dtype.bitwidth`` lanes."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = BLOCK_REGISTERS * REGISTER_BITS // dtype.bitwidth
        super().__init__(name=f"Block({dtype} x {self.lanes})")


@register_model(Block)
class BlockModel(models.PrimitiveModel):
    """An LLVM vector ``<lanes x dtype>``, which LLVM splits into machine registers."""

    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _check_row(name, array):
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"
            and isinstance(array.dtype, types.Float)):
        raise TypingError(f"{name}: expected a C-contiguous 1-D float array, got {array}")


def _check_float_array(name, array):
    if not (isinstance(array, types.Array) and isinstance(array.dtype, types.Float)):
        raise TypingError(f"{name}: expected a float array, got {array}")


def _splat(builder, element, vector_type):
    """``element`` in every lane of a ``vector_type``."""
    undefined = ir.Constant(vector_type, ir.Undefined)
    lane_zero = builder.insert_element(undefined, element, ir.Constant(ir.IntType(32), 0))
    every_lane_from_zero = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count)
    return builder.shuffle_vector(lane_zero, undefined, every_lane_from_zero)


def _lane_pointer(context, builder, array_type, array_value, start, vector_type):
    """Pointer to ``array[start]``, as a pointer to a vector of lanes (no wraparound, no bounds check)."""
    array = context.make_array(array_type)(context, builder, array_value)
    pointer = cgutils.get_item_pointer(context, builder, array_type, array, [start], wraparound=False)
    return builder.bitcast(pointer, ir.PointerType(vector_type))


@intrinsic
def block_lanes(typingctx, array):
    """The number of lanes of a :class:`Block` of ``array``'s dtype (an array of any shape), a constant."""
    _check_float_array("block_lanes", array)
    lanes = Block(array.dtype).lanes

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(array), codegen


@intrinsic
def block_zeros(typingctx, array):
    """A :class:`Block` of zeros, of ``array``'s dtype."""
    _check_row("block_zeros", array)
    block = Block(array.dtype)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(block), None)
    return block(array), codegen


@intrinsic
def block_load(typingctx, array, start):
    """The :class:`Block` holding ``array[start:start + lanes]``."""
    _check_row("block_load", array)
    if not isinstance(start, types.Integer):
        raise TypingError(f"block_load: start must be an integer, got {start}")
    block = Block(array.dtype)

    def codegen(context, builder, signature, args):
        vector_type = context.get_value_type(block)
        pointer = _lane_pointer(context, builder, signature.args[0], args[0], args[1], vector_type)
        return builder.load(pointer, align=array.dtype.bitwidth // 8)
    return block(array, start), codegen


@intrinsic
def block_store(typingctx, array, start, value):
    """``array[start:start + lanes] = value``."""
    _check_row("block_store", array)
    if not (isinstance(value, Block) and value.dtype == array.dtype):
        raise TypingError(f"block_store: value must be a Block of {array.dtype}, got {value}")

    def codegen(context, builder, signature, args):
        pointer = _lane_pointer(context, builder, signature.args[0], args[0], args[1], args[2].type)
        builder.store(args[2], pointer, align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(array, start, value), codegen


@intrinsic
def block_fma(typingctx, scalar, value, accumulator):
    """``accumulator + scalar * value`` lane by lane; LLVM contracts each lane to one fused multiply-add where the
    CPU has them (as it does ``a += c * w`` in numba's own loops), and keeps a multiply and an add where it has not."""
    if not (isinstance(value, Block) and accumulator == value and isinstance(scalar, types.Float)):
        raise TypingError(f"block_fma: expected (float, Block, Block), got ({scalar}, {value}, {accumulator})")

    def codegen(context, builder, signature, args):
        splat = _splat(builder, context.cast(builder, args[0], signature.args[0], value.dtype), args[1].type)
        product = builder.fmul(splat, args[1], flags=("contract",))
        return builder.fadd(args[2], product, flags=("contract",))
    return accumulator(scalar, value, accumulator), codegen


#: Whether :func:`list_nonzero_lanes` stores a register's selected lanes with AVX-512's compressing store
#: (``vpcompressd``); with narrower registers it packs them through a table (:func:`_packing_table`).
COMPRESS_STORE = REGISTER_BITS == 512
#: Whether the kernels list non-zero inputs a register at a time (:func:`list_nonzero_lanes`) rather than with a
#: loop of scalars: measured faster with AVX-512 (compressing store) and AVX2 (table); 128-bit registers unmeasured.
VECTOR_LISTING = REGISTER_BITS >= 256


@intrinsic
def register_lanes(typingctx, array):
    """The number of ``array``'s elements (of any shape) in one machine register, a constant."""
    _check_float_array("register_lanes", array)
    lanes = REGISTER_BITS // array.dtype.bitwidth

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(array), codegen


def _packing_table(module, lanes):
    """A constant ``<lanes x i32>`` per mask of ``lanes`` bits, in ``module``: row ``m`` holds the positions of
    ``m``'s set bits in increasing order, then zeros. ``2**lanes`` rows (256 of 32 bytes for AVX2's float32)."""
    name = f"numba_mlp_packing_table_{lanes}"
    if name in module.globals:
        return module.globals[name]
    row_type = ir.VectorType(ir.IntType(32), lanes)
    table_type = ir.ArrayType(row_type, 2 ** lanes)
    rows = []
    for mask in range(2 ** lanes):
        positions = [lane for lane in range(lanes) if mask >> lane & 1]
        rows.append(ir.Constant(row_type, positions + [0] * (lanes - len(positions))))
    table = ir.GlobalVariable(module, table_type, name)
    table.linkage = "internal"
    table.global_constant = True
    table.initializer = ir.Constant(table_type, rows)
    return table


@intrinsic
def list_nonzero_lanes(typingctx, x, x_prev, start, indices, count):
    """Append to ``indices[count:]`` each ``k`` in ``[start, start + lanes)`` where ``x[k]`` or ``x_prev[k]`` is
    non-zero (NaN counts as non-zero), in order; return ``count`` plus their number.

    ``lanes`` is :func:`register_lanes` of ``x``: one compare of a register each, then, with AVX-512, one
    compressing store (``llvm.masked.compressstore``) of the indices; with narrower registers the mask's row of
    :func:`_packing_table`, plus ``start``, stored whole (its lanes past the listed ones are scratch). No branch.
    ``indices`` is int32 and has room for ``count + lanes``.
    """
    _check_row("list_nonzero_lanes", x)
    if x_prev != x:
        raise TypingError(f"list_nonzero_lanes: x_prev must be typed as x ({x}), got {x_prev}")
    if not (isinstance(indices, types.Array) and indices.ndim == 1 and indices.layout == "C"
            and indices.dtype == types.int32):
        raise TypingError(f"list_nonzero_lanes: indices must be a C-contiguous 1-D int32 array, got {indices}")
    if not (isinstance(start, types.Integer) and isinstance(count, types.Integer)):
        raise TypingError(f"list_nonzero_lanes: start and count must be integers, got {start}, {count}")
    lanes = REGISTER_BITS // x.dtype.bitwidth

    def codegen(context, builder, signature, args):
        x_type, _, start_type, indices_type, count_type = signature.args
        element = context.get_value_type(x.dtype)
        vector_type = ir.VectorType(element, lanes)
        zero = ir.Constant(vector_type, None)
        nonzero = None
        for array in (args[0], args[1]):
            pointer = _lane_pointer(context, builder, x_type, array, args[2], vector_type)
            lane_nonzero = builder.fcmp_unordered("!=", builder.load(pointer, align=x.dtype.bitwidth // 8), zero)
            nonzero = lane_nonzero if nonzero is None else builder.or_(nonzero, lane_nonzero)
        index_type = ir.IntType(32)
        index_vector = ir.VectorType(index_type, lanes)
        first = builder.trunc(context.cast(builder, args[2], start_type, types.int64), index_type)
        count64 = context.cast(builder, args[4], count_type, types.int64)
        destination = _lane_pointer(context, builder, indices_type, args[3], count64, index_type)
        mask_bits = ir.IntType(lanes)
        mask = builder.bitcast(nonzero, mask_bits)
        if COMPRESS_STORE:
            mask_type = ir.VectorType(ir.IntType(1), lanes)
            compress_store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [index_vector, ir.PointerType(index_type), mask_type]),
                f"llvm.masked.compressstore.v{lanes}i32")
            in_order = ir.Constant(index_vector, list(range(lanes)))
            lane_indices = builder.add(_splat(builder, first, index_vector), in_order)
            builder.call(compress_store, [lane_indices, destination, nonzero])
        else:
            row = builder.gep(_packing_table(builder.module, lanes),
                              [ir.Constant(ir.IntType(64), 0), builder.zext(mask, ir.IntType(64))], inbounds=True)
            packed = builder.add(_splat(builder, first, index_vector), builder.load(row, align=4))
            builder.store(packed, builder.bitcast(destination, ir.PointerType(index_vector)), align=4)
        population = cgutils.get_or_insert_function(builder.module, ir.FunctionType(mask_bits, [mask_bits]),
                                                    f"llvm.ctpop.i{lanes}")
        listed = builder.zext(builder.call(population, [mask]), ir.IntType(64))
        return builder.add(count64, listed)
    return types.int64(x, x_prev, start, indices, count), codegen
